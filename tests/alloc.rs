//! The hot path does not allocate on lines that do not match: a counting global allocator
//! watches the matcher and the engine while they process benign traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sentinela::config::Config;
use sentinela::engine::{Engine, Input};
use sentinela::timestamp::{TimeParser, Zone};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Benign lines of the kinds a busy server writes, including ones that contain prefilter
/// literals of the shipped pack (so the regex confirmation step runs and rejects them).
/// (`Accepted ...` lines are hits of `ssh.success-after-failures`, so they are not here.)
const BENIGN: &str = "\
Mar  1 10:00:00 web1 sshd[1201]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
Mar  1 10:00:01 web1 CRON[1300]: pam_unix(cron:session): session closed for user root
Mar  1 10:00:02 web1 systemd-logind[600]: New session 42 of user alice.
Mar  1 10:00:03 web1 kernel: [12345.678] EXT4-fs (sda1): re-mounted. Opts: errors=remount-ro
Mar  1 10:00:04 mail1 postfix/smtp[3100]: 4F2A31C0D2: to=<carol@example.org>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, status=sent (250 2.0.0 Ok)
Mar  1 10:00:05 mail1 dovecot: imap-login: Login: user=<bob>, method=PLAIN, rip=192.0.2.30, lip=192.0.2.5, mpid=4242, TLS
192.0.2.10 - - [01/Mar/2026:10:00:06 +0000] \"GET /index.html HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"
192.0.2.11 - - [01/Mar/2026:10:00:07 +0000] \"GET /static/app.js?v=3 HTTP/1.1\" 304 0 \"https://example.com/\" \"Mozilla/5.0\"
";

#[test]
fn benign_lines_do_not_allocate_in_the_matcher_or_the_engine() {
    let cfg = Config::default();
    let built = cfg.build().expect("shipped config builds");
    let mut engine = Engine::new(built, cfg.file.engine.clone());
    let block: String = BENIGN.repeat(200);
    let mut input = Input::new("bench", TimeParser::new(Zone::parse("UTC").unwrap(), 0));
    let mut hits = 0;
    // Warm-up: regex caches are created on first use.
    engine.process_block(block.as_bytes(), &mut input, true, |_, _, _| hits += 1);
    assert_eq!(
        hits, 0,
        "the benign block must not match any shipped detector"
    );

    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        engine.process_block(block.as_bytes(), &mut input, true, |_, _, _| hits += 1);
    }
    ARMED.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(hits, 0);
    assert_eq!(
        n,
        0,
        "{n} allocations while processing {} benign lines",
        5 * 200 * 8
    );
    assert_eq!(engine.stats.lines, 6 * 200 * 8);
}
