//! `strata-offsets`: see consumer group lag, move group offsets, replay a range of a topic,
//! and read partition directories offline. Talks the Kafka protocol (any Kafka broker);
//! the `log` commands read Strata's segment files directly.
//!
//! Modules by concern: [`client`] (Kafka connections and version negotiation), [`groups`]
//! (list / describe / reset), [`plan`] (reset planning, time arguments), [`records`]
//! (RecordBatch v2 record codec), [`replay`], [`transactions`] (open transactions and the
//! last stable offsets they hold back),
//! [`crate::murmur2`] (Java default partitioner), [`logfile`] (dump / verify), [`output`]
//! (tables, JSON, byte rendering), [`error`].

pub mod client;
pub mod error;
pub mod groups;
pub mod logfile;
pub mod output;
pub mod plan;
pub mod records;
pub mod replay;
pub mod transactions;

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use self::client::Cluster;
use self::error::{Result, ToolError};
use self::plan::ResetTo;

/// Command line of `strata-offsets`.
#[derive(Debug, Parser)]
#[command(
    name = "strata-offsets",
    version,
    about = "Consumer group lag, offset resets, replay and open transactions for Strata (and any Kafka broker)"
)]
pub struct Cli {
    /// Broker to bootstrap from (host:port).
    #[arg(
        long,
        global = true,
        env = "STRATA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consumer groups: list, describe (lag), reset offsets.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Print a range of records, or re-publish it to another topic.
    Replay(ReplayCli),
    /// Read partition directories offline.
    #[command(subcommand)]
    Log(LogCommand),
    /// Transactions: open ones and the last stable offsets they hold back.
    #[command(subcommand)]
    Transactions(TransactionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum TransactionsCommand {
    /// Open transactions: producer, state, age, timeout, and per partition the high
    /// watermark, the last stable offset and how far it is held back.
    List {
        /// Every transaction the coordinators know, also Empty and completed ones.
        #[arg(long)]
        all: bool,
    },
    /// The named transactions, in any state.
    Describe {
        /// Transactional ids.
        #[arg(required = true)]
        transactional_id: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every group of the cluster with its state.
    List,
    /// State, members, and per partition committed offset, log end offset and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (dry run unless --execute).
    Reset(ResetCli),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
#[command(group(ArgGroup::new("target").required(true).args([
    "to_earliest", "to_latest", "to_offset", "to_datetime", "by_duration", "shift_by"
])))]
pub struct ResetCli {
    /// Group id.
    pub group: String,
    /// Topic to reset, optionally with partitions: T or T:0,1,2 (repeatable).
    #[arg(long)]
    pub topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// Reset to the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to this offset (clamped to the log).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// Reset to the first record at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub to_datetime: Option<String>,
    /// Reset to the first record at or after now minus this ISO-8601 duration (PT1H, P1D).
    #[arg(long, value_name = "ISO8601")]
    pub by_duration: Option<String>,
    /// Move the committed offset by ±N (clamped to the log).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Commit the plan (refused while the group has active members).
    #[arg(long)]
    pub execute: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("from").required(true).args(["from_offset", "from_datetime"])))]
#[command(group(ArgGroup::new("until").args(["to_offset", "to_datetime", "count"])))]
pub struct ReplayCli {
    /// Topic to read.
    #[arg(long)]
    pub topic: String,
    /// Only this partition (default: all, one after another).
    #[arg(long)]
    pub partition: Option<i32>,
    /// First offset (inclusive).
    #[arg(long, value_name = "N")]
    pub from_offset: Option<i64>,
    /// First record at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub from_datetime: Option<String>,
    /// Stop before this offset (exclusive).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// Stop before the first record at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339")]
    pub to_datetime: Option<String>,
    /// Stop after this many records in total.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// How records are printed.
    #[arg(long, value_enum, default_value = "json")]
    pub format: replay::Format,
    /// Re-publish the records to this topic instead of printing them.
    #[arg(long, value_name = "TOPIC")]
    pub to_topic: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Batch by batch: offsets, timestamps, producer, compression, CRC status.
    Dump {
        /// A segment .log file or a partition directory.
        path: PathBuf,
        /// Also print every record.
        #[arg(long)]
        records: bool,
    },
    /// Validate every batch and index of a partition directory.
    Verify {
        /// Partition directory (DATA_DIR/TOPIC-PARTITION).
        dir: PathBuf,
    },
}

/// Runs a parsed command line, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    match cli.command {
        Command::Log(LogCommand::Dump { path, records }) => {
            logfile::dump(&path, records, cli.json, out)
        }
        Command::Log(LogCommand::Verify { dir }) => logfile::verify(&dir, cli.json, out),
        Command::Groups(g) => {
            let mut cluster = Cluster::connect(&cli.bootstrap).await?;
            match g {
                GroupsCommand::List => groups::list(&mut cluster, cli.json, out).await,
                GroupsCommand::Describe { group } => {
                    groups::describe(&mut cluster, &group, cli.json, out).await
                }
                GroupsCommand::Reset(r) => {
                    let request = reset_request(r)?;
                    groups::reset(&mut cluster, &request, cli.json, out).await
                }
            }
        }
        Command::Transactions(t) => {
            let mut cluster = Cluster::connect(&cli.bootstrap).await?;
            match t {
                TransactionsCommand::List { all } => {
                    transactions::list(&mut cluster, all, cli.json, out).await
                }
                TransactionsCommand::Describe { transactional_id } => {
                    transactions::describe(&mut cluster, &transactional_id, cli.json, out).await
                }
            }
        }
        Command::Replay(r) => {
            let args = replay_args(r, cli.json)?;
            let mut cluster = Cluster::connect(&cli.bootstrap).await?;
            replay::replay(&mut cluster, &args, cli.json, out).await
        }
    }
}

fn reset_request(r: ResetCli) -> Result<groups::ResetRequest> {
    let to = if r.to_earliest {
        ResetTo::Earliest
    } else if r.to_latest {
        ResetTo::Latest
    } else if let Some(n) = r.to_offset {
        ResetTo::Offset(n)
    } else if let Some(t) = &r.to_datetime {
        ResetTo::Timestamp(plan::parse_datetime(t)?)
    } else if let Some(d) = &r.by_duration {
        let ms = plan::parse_duration(d)?;
        ResetTo::Timestamp(chrono::Utc::now().timestamp_millis().saturating_sub(ms))
    } else if let Some(n) = r.shift_by {
        ResetTo::ShiftBy(n)
    } else {
        return Err(ToolError::Usage("choose where to reset to".to_string()));
    };
    let topics = r
        .topic
        .iter()
        .map(|t| plan::parse_topic_arg(t))
        .collect::<Result<Vec<_>>>()?;
    Ok(groups::ResetRequest {
        group: r.group,
        topics,
        all_topics: r.all_topics,
        to,
        execute: r.execute,
    })
}

fn replay_args(r: ReplayCli, json: bool) -> Result<replay::ReplayArgs> {
    let from = match (r.from_offset, &r.from_datetime) {
        (Some(n), _) => replay::From::Offset(n),
        (None, Some(d)) => replay::From::Time(plan::parse_datetime(d)?),
        (None, None) => {
            return Err(ToolError::Usage(
                "give --from-offset or --from-datetime".into(),
            ))
        }
    };
    let until = if let Some(n) = r.to_offset {
        replay::Until::Offset(n)
    } else if let Some(d) = &r.to_datetime {
        replay::Until::Time(plan::parse_datetime(d)?)
    } else if let Some(n) = r.count {
        replay::Until::Count(n)
    } else {
        replay::Until::LogEnd
    };
    // --json asks for JSON lines even if --format was not given.
    let format = if json { replay::Format::Json } else { r.format };
    Ok(replay::ReplayArgs {
        topic: r.topic,
        partition: r.partition,
        from,
        until,
        format,
        to_topic: r.to_topic,
    })
}
