//! Running an `ops/testenv/*.sh start` harness and reading the `export NAME='value'`
//! lines it prints.

use std::process::Command;

/// What a harness's `start` printed.
pub struct HarnessOutput {
    script: &'static str,
    text: String,
}

impl HarnessOutput {
    /// Runs `bash SCRIPT start`; fails the test with its stderr and `needs` (what
    /// the harness requires) when it cannot start.
    pub fn start(script: &'static str, needs: &str) -> Self {
        // The harness stops itself if this test binary dies without running its
        // Drop guards (killed, or a timeout).
        let output = Command::new("bash")
            .arg(script)
            .arg("start")
            .env("CONTIMG_HARNESS_OWNER", std::process::id().to_string())
            .output()
            .unwrap_or_else(|err| panic!("run {script}: {err}"));
        assert!(
            output.status.success(),
            "{script} start failed (needs {needs}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            script,
            text: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    /// The value of `export NAME='value'`; fails the test when it was not printed.
    pub fn var(&self, name: &str) -> String {
        let prefix = format!("export {name}=");
        self.text
            .lines()
            .find_map(|line| Some(line.strip_prefix(&prefix)?.trim_matches('\'').to_string()))
            .unwrap_or_else(|| panic!("{} printed no {name}:\n{}", self.script, self.text))
    }
}
