//! Hostile subband files: HDF5 features that reach outside the file (external
//! storage, external links, virtual datasets, soft and user-defined links),
//! filter plugins picked up from the environment, and symlinks planted where
//! the merge writes. Every file is made by h5py during the test from a valid
//! pyuvdata subband, so it fails only because of the one hostile feature.

mod uvh5_support;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use contimg::uvh5;
use uvh5_support::{pyuvdata_group, run_script_ok};

/// What make_hostile.py puts outside: finding it in a merged file means the
/// merge read through the reference.
const OUTSIDE_VALUE: (f32, f32) = (1234.5, 6789.25);
const SECRET: &str = "OUTSIDE-SECRET-CONTENT";

/// A two-subband pyuvdata group (sb00, sb01) in `dir`.
fn clean_pair(dir: &Path) -> Vec<(u32, PathBuf)> {
    pyuvdata_group(dir, &["--subbands", "2", "--nfreqs", "8", "--ntimes", "4"])
}

/// Writes `dst` as `src` made hostile by `kind`; returns the outside files it refers to.
fn make_hostile(kind: &str, src: &Path, dst: &Path, outside_dir: &Path) -> Vec<PathBuf> {
    let out = run_script_ok(
        "make_hostile.py",
        &[
            kind,
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            outside_dir.to_str().unwrap(),
        ],
    );
    let line = out.lines().last().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    parsed["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect()
}

/// Bytes and modification time of a file outside every directory, to prove it was not written.
struct Untouched {
    path: PathBuf,
    bytes: Vec<u8>,
    mtime: SystemTime,
}

impl Untouched {
    fn capture(path: &Path) -> Self {
        Untouched {
            path: path.to_path_buf(),
            bytes: std::fs::read(path).unwrap(),
            mtime: std::fs::metadata(path).unwrap().modified().unwrap(),
        }
    }

    fn assert_unchanged(&self, context: &str) {
        let bytes = std::fs::read(&self.path).unwrap();
        let mtime = std::fs::metadata(&self.path).unwrap().modified().unwrap();
        assert!(
            bytes == self.bytes && mtime == self.mtime,
            "{context}: outside file {} was written ({} -> {} bytes, mtime {:?} -> {:?})",
            self.path.display(),
            self.bytes.len(),
            bytes.len(),
            self.mtime,
            mtime
        );
    }
}

fn rejection(path: &Path) -> String {
    match uvh5::inspect(path) {
        Ok(_) => format!("ACCEPTED {}", path.display()),
        Err(e) => e.to_string(),
    }
}

/// (kind, words the rejection must contain)
const REFERENCE_KINDS: [(&str, &[&str]); 6] = [
    ("external-visdata", &["Data/visdata", "external storage"]),
    ("external-history", &["Header/history", "external storage"]),
    ("external-extra", &["Extra/blob", "external storage"]),
    ("external-link", &["Data/visdata", "external link"]),
    ("vds", &["Data/visdata", "virtual dataset"]),
    ("soft-link", &["Data/visdata", "soft link"]),
];

#[test]
fn validation_refuses_every_reference_that_can_leave_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let group = clean_pair(&tmp.path().join("in"));
    let source = &group[1].1;
    uvh5::inspect(source).unwrap();
    let mut failures = Vec::new();
    for (kind, words) in REFERENCE_KINDS {
        let dst = tmp.path().join(format!("{kind}_sb01.hdf5"));
        let outside = make_hostile(
            kind,
            source,
            &dst,
            &tmp.path().join(format!("outside-{kind}")),
        );
        let untouched: Vec<Untouched> = outside.iter().map(|p| Untouched::capture(p)).collect();
        let reason = rejection(&dst);
        println!("{kind}: {reason}");
        if !words.iter().all(|w| reason.contains(w)) {
            failures.push(format!("{kind}: expected {words:?} in: {reason}"));
        }
        for u in &untouched {
            u.assert_unchanged(kind);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Traversal callback of the test's link class: nothing to traverse to.
extern "C" fn refuse_traversal(
    _link_name: *const std::os::raw::c_char,
    _cur_group: hdf5_sys::h5i::hid_t,
    _lnkdata: *const std::ffi::c_void,
    _lnkdata_size: usize,
    _lapl_id: hdf5_sys::h5i::hid_t,
) -> hdf5_sys::h5i::hid_t {
    -1
}

/// A user-defined link (class 255, registered only here to be able to create
/// it) anywhere in the file is refused, whatever its class.
#[test]
fn validation_refuses_a_user_defined_link() {
    use hdf5_sys::h5l::{H5L_TYPE_MAX, H5L_class_t, H5Lcreate_ud, H5Lregister};
    use hdf5_sys::h5p::H5P_DEFAULT;

    let tmp = tempfile::tempdir().unwrap();
    let group = clean_pair(&tmp.path().join("in"));
    let dst = tmp.path().join("ud_sb01.hdf5");
    std::fs::copy(&group[1].1, &dst).unwrap();
    {
        let file = hdf5::File::open_rw(&dst).unwrap();
        let data = file.group("Data").unwrap();
        let comment = CString::new("test user-defined link").unwrap();
        let class = H5L_class_t {
            // H5L_LINK_CLASS_T_VERS is 1 in HDF5 ≥ 1.8 (hdf5-sys says 0, which H5Lregister refuses).
            version: 1,
            id: H5L_TYPE_MAX,
            comment: comment.as_ptr(),
            create_func: None,
            move_func: None,
            copy_func: None,
            trav_func: Some(refuse_traversal),
            del_func: None,
            query_func: None,
        };
        let name = CString::new("mystery").unwrap();
        let payload = b"elsewhere";
        hdf5::sync::sync(|| {
            // SAFETY: `class`, `comment`, `name` and `payload` outlive both calls;
            // `data` is an open group id.
            unsafe {
                assert!(H5Lregister(&class) >= 0);
                assert!(
                    H5Lcreate_ud(
                        data.id(),
                        name.as_ptr(),
                        H5L_TYPE_MAX,
                        payload.as_ptr().cast(),
                        payload.len(),
                        H5P_DEFAULT,
                        H5P_DEFAULT,
                    ) >= 0
                );
            }
        });
    }
    let reason = rejection(&dst);
    assert!(
        reason.contains("Data/mystery") && reason.contains("user-defined link"),
        "{reason}"
    );
}

/// Reads every complex value of `Data/visdata` of a merged file.
fn merged_visdata_has_outside_value(path: &Path) -> bool {
    let file = hdf5::File::open(path).unwrap();
    let ds = file.dataset("Data/visdata").unwrap();
    let values = ds
        .read_raw::<contimg::uvh5::simulate::Visibility>()
        .unwrap();
    values
        .iter()
        .any(|c| c.r == OUTSIDE_VALUE.0 && c.i == OUTSIDE_VALUE.1)
}

/// The file was valid when validated and was swapped for a hostile one before
/// the merge opened it: the merge must check again, refuse the group, leave
/// every outside file alone and write nothing.
#[test]
fn merge_rechecks_inputs_and_never_reads_or_writes_through_references() {
    let tmp = tempfile::tempdir().unwrap();
    let template = clean_pair(&tmp.path().join("template"));
    let mut failures = Vec::new();
    for (kind, words) in REFERENCE_KINDS {
        let in_dir = tmp.path().join(format!("in-{kind}"));
        let out_dir = tmp.path().join(format!("out-{kind}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::create_dir_all(&in_dir).unwrap();
        let group: Vec<(u32, PathBuf)> = template
            .iter()
            .map(|(sb, path)| {
                let copy = in_dir.join(path.file_name().unwrap());
                std::fs::copy(path, &copy).unwrap();
                (*sb, copy)
            })
            .collect();
        for (_, path) in &group {
            uvh5::inspect(path).unwrap();
        }
        let hostile = tmp.path().join(format!("{kind}.hdf5"));
        let outside = make_hostile(
            kind,
            &group[1].1,
            &hostile,
            &tmp.path().join(format!("outside-{kind}")),
        );
        let untouched: Vec<Untouched> = outside.iter().map(|p| Untouched::capture(p)).collect();
        std::fs::rename(&hostile, &group[1].1).unwrap();

        let output = out_dir.join("merged.uvh5");
        let result = uvh5::merge(&group, &output);
        for u in &untouched {
            u.assert_unchanged(kind);
        }
        if output.exists() {
            assert!(
                !merged_visdata_has_outside_value(&output),
                "{kind}: merged visdata holds the outside file's values"
            );
            let bytes = std::fs::read(&output).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{kind}: merged file holds the outside file's text"
            );
        }
        match result {
            Ok(_) => failures.push(format!("{kind}: merge succeeded")),
            Err(e) => {
                let reason = e.to_string();
                println!("{kind}: {reason}");
                if !words.iter().all(|w| reason.contains(w)) {
                    failures.push(format!("{kind}: expected {words:?} in: {reason}"));
                }
            }
        }
        let left: Vec<String> = uvh5_support::dir_entries(&out_dir);
        if !left.is_empty() {
            failures.push(format!("{kind}: output dir not empty: {left:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Filter plugins from the environment.

const CHILD_FILE_ENV: &str = "CONTIMG_HOSTILE_CHILD_FILE";
const CHILD_GROUP_ENV: &str = "CONTIMG_HOSTILE_CHILD_GROUP";
const MARKER_ENV: &str = "CONTIMG_PLUGIN_MARKER";

/// A shared library whose constructor creates the file named by
/// $CONTIMG_PLUGIN_MARKER as soon as anything dlopens it.
fn build_marker_plugin(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let source = dir.join("marker.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void contimg_marker(void) {
    const char *path = getenv("CONTIMG_PLUGIN_MARKER");
    if (path) { FILE *f = fopen(path, "w"); if (f) { fputs("loaded\n", f); fclose(f); } }
}
"#,
    )
    .unwrap();
    // HDF5 considers files named lib*.so in its plugin path.
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("libcontimg_marker.so"))
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "cc failed");
}

/// Runs test `test_name` (one of the `child_*` tests) in a fresh process of this test binary,
/// whose HDF5 starts with HDF5_PLUGIN_PATH pointing at the marker plugin.
fn run_child(
    plugin_dir: &Path,
    marker: &Path,
    file: &Path,
    group: &[(u32, PathBuf)],
    test_name: &str,
) -> String {
    let group_arg: Vec<String> = group
        .iter()
        .map(|(sb, p)| format!("{sb}={}", p.display()))
        .collect();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            test_name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HDF5_PLUGIN_PATH", plugin_dir)
        .env(MARKER_ENV, marker)
        .env(CHILD_FILE_ENV, file)
        .env(CHILD_GROUP_ENV, group_arg.join("\n"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{text}");
    text
}

/// Only run as a child of `filter_plugins_from_the_environment_are_never_loaded`.
#[test]
#[ignore = "run by filter_plugins_from_the_environment_are_never_loaded in a child process"]
fn child_inspects_and_merges() {
    let file = PathBuf::from(std::env::var(CHILD_FILE_ENV).expect("run by the parent test"));
    let group: Vec<(u32, PathBuf)> = std::env::var(CHILD_GROUP_ENV)
        .unwrap()
        .lines()
        .map(|item| {
            let (sb, path) = item.split_once('=').unwrap();
            (sb.parse().unwrap(), PathBuf::from(path))
        })
        .collect();
    match uvh5::inspect(&file) {
        Ok(_) => println!("CHILD inspect: accepted"),
        Err(e) => println!("CHILD inspect: {e}"),
    }
    let output = file.with_file_name("child-merged.uvh5");
    match uvh5::merge(&group, &output) {
        Ok(_) => println!("CHILD merge: ok"),
        Err(e) => println!("CHILD merge: {e}"),
    }
}

/// Only run as a child of `filter_plugins_from_the_environment_are_never_loaded`:
/// the control, reading the filtered dataset with plugin loading on.
#[test]
#[ignore = "run by filter_plugins_from_the_environment_are_never_loaded in a child process"]
fn child_reads_with_plugins_enabled() {
    unsafe extern "C" {
        // The C prototype; hdf5-sys declares the argument as a pointer.
        fn H5PLset_loading_state(plugin_control_mask: std::os::raw::c_uint) -> i32;
    }
    let file = PathBuf::from(std::env::var(CHILD_FILE_ENV).expect("run by the parent test"));
    uvh5::harden_library().unwrap();
    // SAFETY: plain value argument; under hdf5-metno's lock like every HDF5 call.
    let ret = hdf5::sync::sync(|| unsafe { H5PLset_loading_state(0xffff) });
    assert!(ret >= 0);
    let handle = hdf5::File::open(&file).unwrap();
    let result = handle
        .dataset("Header/time_array")
        .unwrap()
        .read_raw::<f64>();
    println!("CHILD control read: {:?}", result.map(|v| v.len()));
}

#[test]
fn filter_plugins_from_the_environment_are_never_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin_dir = tmp.path().join("plugins");
    build_marker_plugin(&plugin_dir);
    let mut group = clean_pair(&tmp.path().join("in"));
    let filtered = tmp.path().join("filtered_sb01.hdf5");
    make_hostile(
        "unknown-filter",
        &group[1].1,
        &filtered,
        &tmp.path().join("outside"),
    );

    // Control: with plugin loading switched back on, this same library meets
    // filter 333 in this file and runs the plugin's constructor, so the
    // fixture is live and the check below can fail.
    let control_marker = tmp.path().join("control-marker");
    let text = run_child(
        &plugin_dir,
        &control_marker,
        &filtered,
        &[],
        "child_reads_with_plugins_enabled",
    );
    assert!(
        control_marker.exists(),
        "control: the plugin was not loaded even with loading enabled, so this test \
         would prove nothing:\n{text}"
    );

    let marker = tmp.path().join("marker");
    group[1].1 = filtered.clone();
    let text = run_child(
        &plugin_dir,
        &marker,
        &filtered,
        &group,
        "child_inspects_and_merges",
    );
    assert!(
        !marker.exists(),
        "a filter plugin from HDF5_PLUGIN_PATH was loaded:\n{text}"
    );
    assert!(text.contains("CHILD inspect: "), "{text}");
    assert!(
        text.contains("Header/time_array") && text.contains("filter 333"),
        "the rejection should name the dataset and the filter:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// Symlinks planted where the merge writes.

/// Temp names the merge may use in this process: `.<name>.<pid>-<n>.partial`.
fn temp_names(out_dir: &Path, name: &str, count: u64) -> Vec<PathBuf> {
    (0..count)
        .map(|n| out_dir.join(format!(".{name}.{}-{n}.partial", std::process::id())))
        .collect()
}

fn plant(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// The merge either wrote a real file at `output` or failed saying why, and
/// never wrote through the symlinks.
fn assert_real_output_or_clear_error(
    result: &Result<uvh5::MergeReport, uvh5::Uvh5Error>,
    output: &Path,
) {
    match result {
        Ok(_) => {
            let meta = std::fs::symlink_metadata(output).unwrap();
            assert!(
                meta.file_type().is_file(),
                "output is {:?}",
                meta.file_type()
            );
            uvh5::inspect(output).unwrap();
        }
        Err(e) => {
            let reason = e.to_string();
            assert!(
                reason.contains("partial") || reason.contains("exists"),
                "{reason}"
            );
        }
    }
}

/// A clean pair to merge, an empty output directory, and files with the
/// given names in a directory outside both.
struct SymlinkScene {
    _tmp: tempfile::TempDir,
    group: Vec<(u32, PathBuf)>,
    out_dir: PathBuf,
    victims: Vec<PathBuf>,
}

fn symlink_scene(victim_names: &[&str]) -> SymlinkScene {
    let tmp = tempfile::tempdir().unwrap();
    let group = clean_pair(&tmp.path().join("in"));
    let out_dir = tmp.path().join("out");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let victims = victim_names
        .iter()
        .map(|name| {
            let victim = outside.join(name);
            std::fs::write(&victim, format!("{name} bytes")).unwrap();
            victim
        })
        .collect();
    SymlinkScene {
        _tmp: tmp,
        group,
        out_dir,
        victims,
    }
}

#[test]
fn planted_symlinks_at_the_temp_and_final_names_are_not_followed() {
    let SymlinkScene {
        _tmp,
        group,
        out_dir,
        victims,
    } = symlink_scene(&["victim", "final-victim"]);
    let (victim, final_victim) = (&victims[0], &victims[1]);
    let untouched = [Untouched::capture(victim), Untouched::capture(final_victim)];

    let output = out_dir.join("merged.uvh5");
    for link in temp_names(&out_dir, "merged.uvh5", 256) {
        plant(&link, victim);
    }
    plant(&output, final_victim);
    let result = uvh5::merge(&group, &output);
    for u in &untouched {
        u.assert_unchanged("planted symlinks");
    }
    assert_real_output_or_clear_error(&result, &output);
}

/// An attacker who keeps re-planting symlinks at every temp name the merge
/// may pick, while merges run: the victim is never written.
#[test]
fn symlinks_planted_during_the_merge_are_not_followed() {
    let SymlinkScene {
        _tmp,
        group,
        out_dir,
        victims,
    } = symlink_scene(&["victim"]);
    let victim = victims[0].clone();
    let untouched = Untouched::capture(&victim);

    let stop = Arc::new(AtomicBool::new(false));
    let links = temp_names(&out_dir, "merged.uvh5", 64);
    let attacker = {
        let stop = Arc::clone(&stop);
        let victim = victim.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for link in &links {
                    let _ = std::os::unix::fs::symlink(&victim, link);
                }
            }
        })
    };
    let output = out_dir.join("merged.uvh5");
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let result = uvh5::merge(&group, &output);
        untouched.assert_unchanged("symlink race");
        assert_real_output_or_clear_error(&result, &output);
        outcomes.push(result.is_ok());
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    untouched.assert_unchanged("symlink race");
    println!("merges that succeeded under attack: {outcomes:?}");
}

/// The simulator writes `<stamp>_sbNN_incomplete.hdf5` and renames it: symlinks
/// planted at either name are replaced, their targets never written.
#[test]
fn simulator_does_not_follow_planted_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let input_dir = tmp.path().join("in");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&input_dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    std::fs::write(&victim, b"victim bytes").unwrap();
    let untouched = Untouched::capture(&victim);
    let stamp = "2025-03-04T05:06:07";
    let planted = [
        input_dir.join(format!("{stamp}_sb00_incomplete.hdf5")),
        input_dir.join(format!("{stamp}_sb01.hdf5")),
    ];
    for link in &planted {
        plant(link, &victim);
    }
    let mut args = uvh5_support::small_sim_args(&input_dir, stamp, 7);
    args.subbands = 2;
    // Names carry the exact start time, so the planted names are the ones used.
    args.jitter = 0.0;
    let report = uvh5::simulate::run(&args).unwrap();
    untouched.assert_unchanged("simulator");
    assert_eq!(report.files_written, 2);
    for path in &report.groups[0].files {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is {:?}",
            path.display(),
            meta.file_type()
        );
        uvh5::inspect(path).unwrap();
    }
    assert!(!planted[0].exists(), "temporary left behind");
}

/// A header string with bytes that are not UTF-8 (found by the validator's mutation
/// run): inspecting it once aborted debug builds (`FixedAscii::as_str` on raw bytes).
#[test]
fn non_utf8_header_strings_do_not_abort_inspection() {
    let tmp = tempfile::tempdir().unwrap();
    let group = clean_pair(tmp.path());
    let outside = tmp.path().join("outside");
    let hostile = tmp.path().join("2025-10-13T13:28:03_sb00.hdf5");
    make_hostile("non-utf8-telescope", &group[0].1, &hostile, &outside);
    // The name must come through decoded (lossily), not as raw bytes in a `&str`.
    let meta = uvh5::inspect(&hostile).expect("only the telescope name differs");
    let name = meta.telescope_name.expect("a telescope name");
    assert!(
        name.starts_with("OVRO") && name.ends_with("MMA"),
        "{name:?}"
    );
    assert!(name.contains('\u{FFFD}'), "{name:?}");
}
