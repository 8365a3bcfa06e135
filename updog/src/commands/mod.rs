//! One module per subcommand; each returns data for [`crate::output`] to print.
pub mod apply;
pub mod check_update;
pub mod explain;
pub mod prepare;
pub mod update;
