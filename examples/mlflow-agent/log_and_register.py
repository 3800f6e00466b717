"""Logs the reference agent (models-from-code), registers a new version and points an
alias at it: the flow of the seed articles. Needs MLFLOW_TRACKING_URI.

    python log_and_register.py [--name opsight-analyst] [--alias prod]

Prints the new version number on the last line.
"""

import argparse
import os

import mlflow
from mlflow import MlflowClient

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="opsight-analyst")
    parser.add_argument("--alias", default="prod")
    args = parser.parse_args()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise SystemExit("set MLFLOW_TRACKING_URI to the tracking server (e.g. http://127.0.0.1:5000)")
    mlflow.set_experiment("opsight-agent")
    with mlflow.start_run(run_name="opsight-reference-agent"):
        logged = mlflow.pyfunc.log_model(
            name="agent",
            python_model=os.path.join(HERE, "opsight_agent.py"),
            registered_model_name=args.name,
            pip_requirements=["mlflow==3.17.2"],
        )
    version = str(logged.registered_model_version)
    MlflowClient().set_registered_model_alias(args.name, args.alias, version)
    print(f"registered {args.name} version {version}; alias {args.alias} -> {version}")
    print(version)


if __name__ == "__main__":
    main()
