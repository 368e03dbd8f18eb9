//! `simboxd watch`: a live terminal view for an officer at a suspect premises, per line and
//! with the evidence (what sngrep gives for dialogs, here for verdicts).
//!
//! Contract: one source, chosen on the command line: a live interface, a capture file replayed
//! in packet time, or a running daemon's HTTP API. The source runs on its own thread (the same
//! `Engine` and config loading as `analyze`/`run`) and hands snapshots over a bounded channel;
//! the UI thread redraws at most `MAX_FPS` times a second and never blocks the source. The
//! terminal is restored on `q`, on a panic (hook) and on SIGTERM/SIGHUP.

pub mod app;
pub(crate) mod engine_view;
pub(crate) mod remote;
pub mod source;
pub(crate) mod threats;
pub mod ui;
pub mod view;

use anyhow::Context;
use app::{Action, App};
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::{cursor, execute, terminal};
use source::{Command, EngineSource, Link, Outputs, Speed};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use view::Snapshot;

/// Most redraws per second.
pub const MAX_FPS: u64 = 10;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["interface", "file", "connect"])))]
pub struct WatchArgs {
    // Section names in brackets are the config's, not links (this text is also the --help).
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Capture live from this interface (libpcap; [capture] settings of --config apply).
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Replay this pcap/pcapng file in packet time.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Replay speed for --file: a factor of packet time (1 = as recorded) or `max`.
    #[arg(long, value_name = "N|max", default_value = "1")]
    pub speed: Speed,
    /// Watch a running daemon (or central) through its HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub connect: Option<String>,
    /// File holding the API's bearer token (first line); needed with --connect.
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// --connect (default: the system's).
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub ca_file: Option<PathBuf>,
    // Section names in brackets are the config's, not links (this text is also the --help).
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Config file: the same as `run`/`analyze` ([network], [limits], [detection], [privacy],
    /// [capture] for --interface).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Folder for evidence (`e`), reports (`r`) and the live capture's spool.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Live capture: MiB of packets kept in the spool for evidence and reports (0: none).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub spool_mib: u64,
    /// Case identifier stated in the report and the evidence manifest.
    #[arg(long, value_name = "ID")]
    pub case: Option<String>,
    /// Examiner's name stated in the report and the evidence manifest.
    #[arg(long, value_name = "NAME")]
    pub examiner: Option<String>,
}

/// What the source thread runs.
enum Mode {
    File(PathBuf, Speed),
    Live(String, u64),
    Remote(remote::Remote),
}

fn mode_of(args: &WatchArgs) -> anyhow::Result<(Mode, String)> {
    if let Some(f) = &args.file {
        if !f.is_file() {
            anyhow::bail!("{}: no such capture file", f.display());
        }
        let speed = match args.speed {
            Speed::Max => "max".to_string(),
            Speed::Factor(x) => format!("x{x}"),
        };
        return Ok((
            Mode::File(f.clone(), args.speed),
            format!("file {} (speed {speed})", f.display()),
        ));
    }
    if let Some(i) = &args.interface {
        return Ok((
            Mode::Live(i.clone(), args.spool_mib.saturating_mul(1 << 20)),
            format!("interface {i}"),
        ));
    }
    let Some(url) = &args.connect else {
        anyhow::bail!("give one of --interface, --file or --connect");
    };
    let url: crate::alert::webhook::WebhookUrl = url
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e.replace("webhook url", "--connect")))?;
    let Some(tf) = &args.token_file else {
        anyhow::bail!("--connect needs --token-file (the daemon's API token)");
    };
    let text =
        crate::http::read_secret_file(tf).map_err(|e| anyhow::anyhow!("--token-file {e}"))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        anyhow::bail!("--token-file {}: empty", tf.display());
    }
    let tls = if url.https {
        Some(crate::alert::delivery::tls_client_config(
            args.ca_file.as_deref(),
        )?)
    } else {
        None
    };
    let desc = format!("daemon {url}");
    Ok((Mode::Remote(remote::Remote { url, token, tls }), desc))
}

/// The run's config: `--config` loaded as `analyze` does, or the defaults.
pub fn settings(args: &WatchArgs) -> anyhow::Result<crate::config::Config> {
    let mut cfg = match &args.config {
        Some(p) => crate::config::Config::load(p)?,
        None => crate::config::Config::default(),
    };
    if let Some(i) = &args.interface {
        cfg.capture.interface = Some(i.clone());
    }
    Ok(cfg)
}

static STOP: AtomicBool = AtomicBool::new(false);

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// Raw mode and the alternate screen while alive; the terminal as it was once dropped.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        terminal::enable_raw_mode().context("this needs a terminal (raw mode)")?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// SIGTERM and SIGHUP (the SSH session went away) end the view like `q` does.
fn watch_signals() {
    let _ = std::thread::Builder::new()
        .name("watch-signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut hup)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                STOP.store(true, Ordering::SeqCst);
            });
        });
}

pub fn cli_main(args: WatchArgs) -> anyhow::Result<()> {
    let cfg = settings(&args)?;
    let (mode, desc) = mode_of(&args)?;
    // Refuse bad [privacy] before the screen changes.
    crate::privacy::Pseudonymizer::from_config(&cfg.privacy)
        .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))?;
    let (snap_tx, snap_rx) = sync_channel::<Snapshot>(1);
    let (cmd_tx, cmd_rx) = channel::<Command>();
    let (note_tx, note_rx) = channel::<String>();
    let focus = Arc::new(Mutex::new(None));
    let link = Link {
        snapshots: snap_tx,
        commands: cmd_rx,
        notices: note_tx,
        focus: focus.clone(),
    };
    let engine = EngineSource {
        cfg,
        outputs: Outputs {
            dir: args.out.clone(),
            case: args.case.clone(),
            examiner: args.examiner.clone(),
        },
        source_desc: desc.clone(),
    };
    let worker = std::thread::Builder::new()
        .name("watch-source".into())
        .spawn(move || {
            let r = match mode {
                Mode::File(path, speed) => engine.run_file(&path, speed, &link),
                Mode::Live(interface, spool) => engine.run_live(&interface, spool, &link),
                Mode::Remote(r) => r.run(&link),
            };
            if let Err(e) = &r {
                let _ = link
                    .notices
                    .send(format!("source stopped: {}", crate::error_chain(e)));
            }
            r
        })?;

    watch_signals();
    let previous = std::panic::take_hook();
    // A panic anywhere (the source thread too) gives the terminal back before its message is
    // printed, and ends the view.
    std::panic::set_hook(Box::new(move |info| {
        STOP.store(true, Ordering::SeqCst);
        restore_terminal();
        previous(info);
    }));
    let guard = TerminalGuard::enter()?;
    let result = ui_loop(Snapshot::empty(desc), &snap_rx, &note_rx, &cmd_tx, &focus);
    drop(guard);
    let _ = std::panic::take_hook();
    // The source sees the closed command channel and stops.
    drop(cmd_tx);
    drop(snap_rx);
    if worker.is_finished() {
        if let Ok(Err(e)) = worker.join() {
            eprintln!("simboxd watch: {}", crate::error_chain(&e));
        }
    }
    result
}

fn ui_loop(
    first: Snapshot,
    snaps: &std::sync::mpsc::Receiver<Snapshot>,
    notes: &std::sync::mpsc::Receiver<String>,
    commands: &std::sync::mpsc::Sender<Command>,
    focus: &Arc<Mutex<Option<std::net::IpAddr>>>,
) -> anyhow::Result<()> {
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend)?;
    term.clear()?;
    let mut app = App::new(first);
    let frame_every = Duration::from_millis(1000 / MAX_FPS);
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        while let Ok(s) = snaps.try_recv() {
            app.update(s);
            dirty = true;
        }
        while let Ok(n) = notes.try_recv() {
            app.notice = Some(n);
            dirty = true;
        }
        if dirty && last_draw.is_none_or(|t| t.elapsed() >= frame_every) {
            term.draw(|f| ui::draw(f, &app))?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if !event::poll(Duration::from_millis(40))? {
            continue;
        }
        match event::read()? {
            Event::Key(k) if k.kind == KeyEventKind::Press => {
                dirty = true;
                for a in app.key(k) {
                    match a {
                        Action::Quit => return Ok(()),
                        Action::Send(c) => {
                            if commands.send(c).is_err() {
                                app.notice = Some("the source has stopped".into());
                            }
                        }
                        Action::Focus(ip) => {
                            if let Ok(mut f) = focus.lock() {
                                *f = ip;
                            }
                        }
                    }
                }
            }
            Event::Resize(..) => {
                term.autoresize()?;
                dirty = true;
            }
            _ => {}
        }
    }
}
