//! `shell`: run one allowlisted program with arguments through the host's `shell`
//! capability — never a shell, so no pipes, globbing or `;` — in the folder the operator set.
//! Off unless the operator lists programs in `permissions.shell.allow`.

use databot_sdk::prelude::*;

databot_sdk::manifest! {
    name: "shell",
    kind: "tool",
    description: "Run an allowlisted program with arguments (no shell).",
    capabilities: ["shell"],
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    /// Program to run; must be one the operator allowed (e.g. `git`, `dbt`).
    program: String,
    /// Arguments, one per item; they are passed as they are, not interpreted by a shell.
    #[serde(default)]
    args: Vec<String>,
    /// Text to send to the program's standard input.
    #[serde(default)]
    stdin: Option<String>,
}

#[derive(Serialize)]
struct RunOutput {
    exit_code: i32,
    stdout: String,
    stderr: String,
    truncated: bool,
}

databot_sdk::tools! {
    /// Run an allowed program with arguments and return its exit code and output.
    fn shell(args: RunArgs) -> Result<RunOutput, PluginError> {
        let out = databot_sdk::shell::run(&args.program, &args.args, args.stdin.as_deref())?;
        Ok(RunOutput { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr, truncated: out.truncated })
    }
}
