//! Data coming in: order lines from CSV files, unit costs, and the demo network. Every
//! write goes through the store's fact seam, all or nothing.
//!
//! - [`import`]: `opsight import orders FILE.csv`, validated whole, bad rows named by line.
//! - [`costs`]: unit costs for money at stake (CSV and API), all or nothing.
//! - [`seed`]: the demo network generator with its planted problems.
//! - [`sites`]: sites renamed and grouped (a sites CSV and the API).
//! - [`catalogue`]: the team's dimensions, fields and KPIs put in force.

pub mod catalogue;
pub mod costs;
pub mod import;
pub mod seed;
pub mod sites;
