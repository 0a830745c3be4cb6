//! `databot init`: a wizard that writes a starting configuration. Every secret is a `${VAR}`
//! placeholder (the variables to set are printed at the end); no secret value is ever asked
//! for or written, and an existing file is replaced only when the operator says so.
//!
//! Questions are read line by line from standard input (a script can pipe the answers); an
//! empty answer takes the default shown in brackets.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// What the wizard asks, answered.
#[derive(Debug, Default)]
struct Answers {
    provider: String,
    model: Option<String>,
    bind: String,
    sql: Option<SqlAnswer>,
    channel: Option<String>,
    data_dir: String,
}

#[derive(Debug)]
struct SqlAnswer {
    name: String,
    kind: String,
}

struct Prompter<R, W> {
    input: R,
    output: W,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    /// Ask; an empty answer (or the end of the input) takes `default`.
    fn ask(&mut self, question: &str, default: &str) -> anyhow::Result<String> {
        write!(self.output, "{question} [{default}]: ")?;
        self.output.flush()?;
        let mut line = String::new();
        self.input.read_line(&mut line)?;
        let answer = line.trim();
        Ok(if answer.is_empty() {
            default.to_owned()
        } else {
            answer.to_owned()
        })
    }

    /// Ask until the answer is one of `choices`.
    fn choose(
        &mut self,
        question: &str,
        choices: &[&str],
        default: &str,
    ) -> anyhow::Result<String> {
        for _ in 0..5 {
            let answer = self.ask(&format!("{question} ({})", choices.join("/")), default)?;
            if choices.contains(&answer.as_str()) {
                return Ok(answer);
            }
            writeln!(
                self.output,
                "  please answer one of: {}",
                choices.join(", ")
            )?;
        }
        bail!("no valid answer to `{question}`")
    }
}

pub fn run(output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut prompter = Prompter {
        input: stdin.lock(),
        output: std::io::stdout(),
    };
    let path = match output {
        Some(path) => path,
        None => PathBuf::from(prompter.ask("Write the configuration to", "databot.yaml")?),
    };
    if path.exists() {
        let replace = prompter.choose(
            &format!("{} exists. Replace it?", path.display()),
            &["y", "n"],
            "n",
        )?;
        if replace != "y" {
            println!("left {} as it is", path.display());
            return Ok(ExitCode::SUCCESS);
        }
    }
    let answers = interview(&mut prompter)?;
    let (yaml, variables) = render(&answers);
    write_new(&path, &yaml)?;
    println!("\nwrote {}", path.display());
    if variables.is_empty() {
        println!("no secrets needed");
    } else {
        println!("set these environment variables before `databot serve`:");
        for (variable, what) in &variables {
            println!("  {variable:<24} {what}");
        }
    }
    println!(
        "check it with: databot config check {}\nstart with:    databot --config {} serve",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn interview<R: BufRead, W: Write>(prompter: &mut Prompter<R, W>) -> anyhow::Result<Answers> {
    let provider = prompter.choose(
        "Model provider (offline needs no key and no network)",
        &["offline", "openai", "anthropic"],
        "offline",
    )?;
    let model = match provider.as_str() {
        "openai" => Some(prompter.ask("Model", "gpt-4o-mini")?),
        "anthropic" => Some(prompter.ask("Model", "claude-sonnet-4-5")?),
        _ => None,
    };
    let bind = prompter.ask(
        "Gateway address (non-loopback needs API keys)",
        "127.0.0.1:8080",
    )?;
    bind.parse::<std::net::SocketAddr>()
        .with_context(|| format!("`{bind}` is not an address:port"))?;
    let sql = match prompter
        .choose(
            "A SQL source to query",
            &["none", "postgres", "mysql", "sqlite"],
            "none",
        )?
        .as_str()
    {
        "none" => None,
        kind => {
            let name = prompter.ask("Its name", "warehouse")?;
            crate::config::check_plugin_name(&name).map_err(anyhow::Error::msg)?;
            // The source's connector is a plugin section of that name: it must not be one the
            // wizard (or the binary) already uses.
            if crate::runtime::builtin::BUILTIN_PLUGINS
                .iter()
                .any(|b| b.name == name)
            {
                bail!("`{name}` is the name of a built-in plugin; name the source otherwise");
            }
            Some(SqlAnswer {
                name,
                kind: kind.to_owned(),
            })
        }
    };
    let channel = match prompter
        .choose(
            "A chat channel",
            &["none", "slack", "telegram", "discord"],
            "none",
        )?
        .as_str()
    {
        "none" => None,
        other => Some(other.to_owned()),
    };
    let data_dir = prompter.ask("Data folder (sessions, caches, plugin state)", ".databot")?;
    Ok(Answers {
        provider,
        model,
        bind,
        sql,
        channel,
        data_dir,
    })
}

/// The YAML and the variables it needs (name, what to put in it).
fn render(answers: &Answers) -> (String, Vec<(String, String)>) {
    let mut yaml = String::from(
        "# Written by `databot init`. Secrets are ${VARIABLES}: set them in the environment.\n# Every key: `databot config default` and config/full.yaml in the repository.\n",
    );
    let mut variables: Vec<(String, String)> = Vec::new();
    let _ = write!(
        yaml,
        "runtime:\n  plugins_dir: {plugins}\n  data_dir: {dir}\n  builtin_plugins: true\n  watch: true\n",
        plugins = scalar(&format!("{}/plugins", answers.data_dir)),
        dir = scalar(&answers.data_dir)
    );
    let _ = write!(yaml, "agent:\n  provider: {}\n", answers.provider);
    let loopback = answers
        .bind
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let _ = writeln!(yaml, "gateway:\n  bind: {}", scalar(&answers.bind));
    if !loopback {
        yaml.push_str("  api_keys: [\"${DATABOT_API_KEY}\"]\n");
        variables.push((
            "DATABOT_API_KEY".into(),
            "a random key of 16 characters or more for API clients (`openssl rand -hex 24`)".into(),
        ));
    }
    if let Some(sql) = &answers.sql {
        let (url, variable) = match sql.kind.as_str() {
            "sqlite" => (
                scalar(&format!("sqlite://{}/{}.db", answers.data_dir, sql.name)),
                None,
            ),
            kind => {
                let variable = format!("{}_URL", sql.name.to_ascii_uppercase());
                (
                    format!("\"${{{variable}}}\""),
                    Some((variable, kind.to_owned())),
                )
            }
        };
        let _ = write!(
            yaml,
            "data:\n  sql:\n    {name}: {{ url: {url} }}   # read-only unless `writable: true`\n",
            name = sql.name
        );
        if let Some((variable, kind)) = variable {
            let example = if kind == "postgres" {
                "postgres://reader:PASSWORD@db:5432/analytics"
            } else {
                "mysql://reader:PASSWORD@db:3306/analytics"
            };
            variables.push((
                variable,
                format!("the source's URL with its password, e.g. {example}"),
            ));
        }
    }
    yaml.push_str("plugins:\n");
    match answers.provider.as_str() {
        "openai" => {
            yaml.push_str("  openai:\n    permissions:\n      http:\n        allow: [\"api.openai.com\"]\n        secrets: [{ host: \"https://api.openai.com\", header: authorization, value: \"Bearer ${OPENAI_API_KEY}\" }]\n");
            let _ = writeln!(
                yaml,
                "    config: {{ model: {} }}",
                scalar(answers.model.as_deref().unwrap_or_default())
            );
            variables.push(("OPENAI_API_KEY".into(), "your OpenAI API key".into()));
        }
        "anthropic" => {
            yaml.push_str("  anthropic:\n    permissions:\n      http:\n        allow: [\"api.anthropic.com\"]\n        secrets: [{ host: \"https://api.anthropic.com\", header: x-api-key, value: \"${ANTHROPIC_API_KEY}\" }]\n");
            let _ = writeln!(
                yaml,
                "    config: {{ model: {} }}",
                scalar(answers.model.as_deref().unwrap_or_default())
            );
            variables.push(("ANTHROPIC_API_KEY".into(), "your Anthropic API key".into()));
        }
        _ => {}
    }
    if let Some(sql) = &answers.sql {
        let _ = write!(
            yaml,
            "  {name}:\n    builtin: sql_connector\n    config: {{ source: {name} }}\n    permissions: {{ sql: [{name}] }}\n  sql:\n    config: {{ connectors: [{name}] }}\n    permissions: {{ connectors: [{name}] }}\n  data_quality:\n    config: {{ connectors: [{name}] }}\n    permissions: {{ connectors: [{name}] }}\n",
            name = sql.name
        );
    }
    match answers.channel.as_deref() {
        Some("slack") => {
            yaml.push_str("  slack:\n    permissions:\n      state: true\n      verify:\n        signing_secret: { secret: \"${SLACK_SIGNING_SECRET}\" }\n      http:\n        allow: [slack.com]\n        secrets: [{ host: \"https://slack.com\", header: authorization, value: \"Bearer ${SLACK_BOT_TOKEN}\" }]\n    channel:\n      allow_users: []        # Slack user ids (U0123ABC) who may talk to the agent; [\"*\"] for everyone\n");
            variables.push((
                "SLACK_SIGNING_SECRET".into(),
                "Basic Information > Signing Secret".into(),
            ));
            variables.push((
                "SLACK_BOT_TOKEN".into(),
                "OAuth & Permissions > Bot User OAuth Token (xoxb-...)".into(),
            ));
        }
        Some("telegram") => {
            yaml.push_str("  telegram:\n    permissions:\n      verify:\n        secret_token: { secret: \"${TELEGRAM_SECRET_TOKEN}\" }\n      http:\n        allow: [api.telegram.org]\n        secrets: [{ host: \"https://api.telegram.org\", path_prefix: \"/bot${TELEGRAM_TOKEN}\" }]\n    channel:\n      allow_users: []        # Telegram user ids who may talk to the agent\n");
            variables.push((
                "TELEGRAM_TOKEN".into(),
                "the bot token from @BotFather".into(),
            ));
            variables.push((
                "TELEGRAM_SECRET_TOKEN".into(),
                "1-256 of A-Z a-z 0-9 _ -, also given to setWebhook".into(),
            ));
        }
        Some("discord") => {
            yaml.push_str("  discord:\n    permissions:\n      verify:\n        public_key: { ed25519_public_key: \"${DISCORD_PUBLIC_KEY}\" }\n      http:\n        allow: [discord.com]\n        secrets: [{ host: \"https://discord.com\", header: authorization, value: \"Bot ${DISCORD_BOT_TOKEN}\" }]\n    channel:\n      allow_users: []        # Discord user ids who may talk to the agent\n");
            variables.push((
                "DISCORD_PUBLIC_KEY".into(),
                "General Information > Public Key (64 hex digits)".into(),
            ));
            variables.push(("DISCORD_BOT_TOKEN".into(), "Bot > Token".into()));
        }
        _ => {}
    }
    if yaml.ends_with("plugins:\n") {
        yaml.push_str("  {}\n");
        yaml = yaml.replace("plugins:\n  {}\n", "plugins: {}\n");
    }
    (yaml, variables)
}

/// An answer as one YAML scalar, whatever it holds: a double-quoted string (JSON's escapes
/// are YAML's), with `${` written `$${` so it is never taken for a placeholder.
fn scalar(text: &str) -> String {
    serde_json::to_string(&text.replace("${", "$${")).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Write `text` to `path` (replacing it only after the operator agreed, which `run` asked).
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(lines: &str) -> Answers {
        let mut prompter = Prompter {
            input: std::io::Cursor::new(lines.as_bytes().to_vec()),
            output: Vec::new(),
        };
        interview(&mut prompter).expect("answers")
    }

    #[test]
    fn defaults_make_an_offline_loopback_config_without_secrets() {
        let (yaml, variables) = render(&answers(""));
        assert!(variables.is_empty());
        let config = crate::config::Config::parse(&yaml, "init.yaml", |_| None).expect("valid");
        assert_eq!(config.agent.provider, "offline");
        assert_eq!(config.gateway.bind, "127.0.0.1:8080");
    }

    #[test]
    fn every_secret_is_a_placeholder_and_every_placeholder_is_listed() {
        let (yaml, variables) = render(&answers(
            "openai\n\n0.0.0.0:8080\npostgres\nwarehouse\nslack\n/var/lib/databot\n",
        ));
        let names: Vec<&str> = variables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "DATABOT_API_KEY",
                "WAREHOUSE_URL",
                "OPENAI_API_KEY",
                "SLACK_SIGNING_SECRET",
                "SLACK_BOT_TOKEN"
            ]
        );
        // With the variables set, the file is valid; without them, it names what is missing.
        let config = crate::config::Config::parse(&yaml, "init.yaml", |name| {
            names.contains(&name).then(|| "x".repeat(32))
        })
        .expect("valid with the variables set");
        assert!(config.plugins.contains_key("slack") && config.data.sql.contains_key("warehouse"));
        let missing = crate::config::Config::parse(&yaml, "init.yaml", |_| None)
            .expect_err("unset variables are errors");
        assert!(missing.to_string().contains("DATABOT_API_KEY"), "{missing}");
    }

    #[test]
    fn answers_cannot_add_keys_or_placeholders() {
        let sneaky = answers(
            "openai\ngpt-4o\", base_url: \"http://127.0.0.1:9/v1\n\n\n\nMy ${HOME} \"data\"\n",
        );
        let (yaml, _) = render(&sneaky);
        let config = crate::config::Config::parse(&yaml, "init.yaml", |name| {
            (name == "OPENAI_API_KEY").then(|| "x".into())
        })
        .expect("valid");
        assert_eq!(
            config.runtime.data_dir,
            std::path::Path::new("My ${HOME} \"data\"")
        );
        let openai = &config.plugins["openai"].config;
        assert_eq!(openai.len(), 1, "only the model: {openai:?}");
        let mut prompter = Prompter {
            input: std::io::Cursor::new(b"offline\n\npostgres\nslack\n".to_vec()),
            output: Vec::new(),
        };
        let clash = interview(&mut prompter).expect_err("a built-in's name");
        assert!(clash.to_string().contains("built-in plugin"), "{clash}");
    }

    #[test]
    fn a_wrong_choice_is_asked_again() {
        let picked = answers("gpt\nanthropic\n\n\n\n\n\n");
        assert_eq!(picked.provider, "anthropic");
    }
}
