"""The reference agent behind MLflow's AgentServer (streams over SSE).

    python agent_server.py --port 8001

The same OpsightAnalyst as `mlflow models serve` runs, through module-level @invoke and
@stream handlers, as the seed articles describe for Databricks Apps.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mlflow.genai.agent_server import AgentServer, invoke, stream  # noqa: E402
from mlflow.types.responses import ResponsesAgentRequest  # noqa: E402

from opsight_agent import AGENT  # noqa: E402


@invoke()
def non_streaming(request: ResponsesAgentRequest):
    return AGENT.predict(request)


@stream()
def streaming(request: ResponsesAgentRequest):
    yield from AGENT.predict_stream(request)


agent_server = AgentServer("ResponsesAgent")
app = agent_server.app

if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Opsight's reference agent on AgentServer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # The app object, not an import string: importing this file a second time would
    # register the @invoke/@stream handlers twice.
    uvicorn.run(app, host=args.host, port=args.port)
