//! Lists of tools as operators write them (a specialist's tools, a channel's tools, a tool
//! group): a list names a host tool by its name, and a configured plugin's tool by the tool's
//! name or the plugin's.

/// Does `list` name `tool`: the host tool by its name, a configured plugin's tool by its name
/// or its plugin's? A plugin the operator did not configure is named by no list.
pub fn names_tool(list: &[String], tool: &str, owner: ToolOwner<'_>) -> bool {
    match owner {
        ToolOwner::Host => list.iter().any(|t| t == tool),
        ToolOwner::Plugin {
            name,
            configured: true,
        } => list.iter().any(|t| t == tool || t == name),
        ToolOwner::Plugin {
            configured: false, ..
        } => false,
    }
}

/// Who provides a tool, for the specialists', channels' and tool groups' lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOwner<'a> {
    /// The host itself (`memory`, `cron`).
    Host,
    /// A plugin; `configured`: a built-in or one with a `plugins.NAME` section.
    Plugin { name: &'a str, configured: bool },
}
