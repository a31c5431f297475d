//! libnftables in-process: the library the `nft` command is built on, loaded once.
//!
//! A lab of 1,000 instances applies 1,000 rulesets; starting one `nft` process for each
//! spent most of `up`'s time loading and relocating this very library. The same JSON
//! batch (built with the nftables crate) goes to `nft_run_cmd_from_buffer` instead: still
//! one atomic transaction per namespace, still validated by nft's own parser, but no
//! process. The netlink socket it opens belongs to the calling thread's network
//! namespace, so callers run it on a thread inside the lab namespace, as with `nft`.
//! When the library can't be loaded, `nft` processes are used instead.

use anyhow::{Result, bail};
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, OnceLock};

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunBuffer = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type SetFlags = unsafe extern "C" fn(*mut c_void, c_uint);

/// `NFT_CTX_OUTPUT_JSON` (libnftables.h): with it set, input is read as JSON too.
const OUTPUT_JSON: c_uint = 1 << 4;

struct Lib {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxInt,
    buffer_error: CtxInt,
    get_error: GetBuffer,
    get_output: GetBuffer,
    set_output_flags: SetFlags,
    run: RunBuffer,
}

/// libnftables keeps process-wide state its documentation doesn't promise is
/// thread-safe; one transaction at a time costs little (the kernel work is the same).
static LOCK: Mutex<()> = Mutex::new(());
static LIB: OnceLock<Option<Lib>> = OnceLock::new();

fn load() -> Option<Lib> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are libnftables' public
    // API (libnftables(3)) with the signatures declared above.
    unsafe {
        let h = libc::dlopen(
            c"libnftables.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        );
        if h.is_null() {
            return None;
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(h, name.as_ptr());
            (!p.is_null()).then_some(p)
        };
        Some(Lib {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
            buffer_output: std::mem::transmute::<*mut c_void, CtxInt>(sym(
                c"nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, CtxInt>(sym(c"nft_ctx_buffer_error")?),
            get_error: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                c"nft_ctx_get_error_buffer",
            )?),
            get_output: std::mem::transmute::<*mut c_void, GetBuffer>(sym(
                c"nft_ctx_get_output_buffer",
            )?),
            set_output_flags: std::mem::transmute::<*mut c_void, SetFlags>(sym(
                c"nft_ctx_output_set_flags",
            )?),
            run: std::mem::transmute::<*mut c_void, RunBuffer>(sym(c"nft_run_cmd_from_buffer")?),
        })
    }
}

/// Whether the library is available (loaded on first use).
pub fn available() -> bool {
    LIB.get_or_init(load).is_some()
}

/// Runs a JSON batch in the calling thread's network namespace.
pub fn run(json: &str) -> Result<()> {
    match exec(json)? {
        Ok(_) => Ok(()),
        Err(e) => bail!("nft rejected the ruleset: {e}"),
    }
}

/// Runs a JSON command that lists something (`{"nftables": [{"list": ...}]}`) in the
/// calling thread's network namespace: the listing as JSON, or nft's error message
/// (`No such file or directory` for a table that isn't there).
pub fn list(json: &str) -> Result<std::result::Result<String, String>> {
    exec(json)
}

/// Runs a JSON command: what it printed, or nft's error message.
fn exec(json: &str) -> Result<std::result::Result<String, String>> {
    let Some(lib) = LIB.get_or_init(load) else {
        bail!("libnftables.so.1 is not available");
    };
    let cmd = CString::new(json)?;
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: a context is created, used and freed here; buffers it returns are read
    // before it is freed.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            bail!("nft_ctx_new failed");
        }
        (lib.set_output_flags)(ctx, OUTPUT_JSON);
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        let rc = (lib.run)(ctx, cmd.as_ptr());
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().trim().to_string()
            }
        };
        let out = if rc == 0 {
            Ok(text((lib.get_output)(ctx)))
        } else {
            Err(text((lib.get_error)(ctx)))
        };
        (lib.ctx_free)(ctx);
        Ok(out)
    }
}
