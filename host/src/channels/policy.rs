//! Who a channel answers: the operator's allowlists and the kinds of message it responds to
//! (`plugins.NAME.channel`). Bots (this one included), edits and joins are never answered.

use crate::config::{Addressed, ChannelSettings};
use crate::contract::chat_channel::{self, InboundMessage};

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Answer,
    /// Not for the agent: a bot's message, an edit or join, or one that does not address the
    /// bot in a way the channel responds to.
    Ignore(&'static str),
    /// From a user, chat or workspace the allowlists do not name.
    Refuse(&'static str),
}

fn addressed(message: &InboundMessage) -> Addressed {
    match message.addressed {
        chat_channel::Addressed::Direct => Addressed::Direct,
        chat_channel::Addressed::Mention => Addressed::Mention,
        chat_channel::Addressed::Ambient => Addressed::Ambient,
    }
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|entry| entry == "*" || entry == value)
}

pub fn decide(settings: &ChannelSettings, message: &InboundMessage) -> Decision {
    if message.from_bot {
        return Decision::Ignore("sent by a bot");
    }
    if message.not_a_message {
        return Decision::Ignore("not a new message (an edit, a join, a reaction)");
    }
    if message.text.trim().is_empty() && message.attachments.is_empty() {
        return Decision::Ignore("empty");
    }
    if !settings.respond_to.contains(&addressed(message)) {
        return Decision::Ignore("does not address the bot in a way this channel responds to");
    }
    match admits(
        settings,
        &message.sender,
        &message.chat,
        message.workspace.as_deref(),
    ) {
        Ok(()) => Decision::Answer,
        Err(why) => Decision::Refuse(why),
    }
}

/// Do the allowlists admit `user` in `chat` (of `workspace`)? Why not, otherwise. Checked for
/// each message, and again at each run of a job made in the channel.
pub fn admits(
    settings: &ChannelSettings,
    user: &str,
    chat: &str,
    workspace: Option<&str>,
) -> Result<(), &'static str> {
    if !settings.allow_workspaces.is_empty()
        && !workspace.is_some_and(|w| listed(&settings.allow_workspaces, w))
    {
        return Err("workspace not in allow_workspaces");
    }
    if !settings.allow_chats.is_empty() && !listed(&settings.allow_chats, chat) {
        return Err("chat not in allow_chats");
    }
    if !listed(&settings.allow_users, user) {
        return Err("user not in allow_users");
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn message(
    sender: &str,
    chat: &str,
    addressed: chat_channel::Addressed,
) -> InboundMessage {
    InboundMessage {
        event_id: "e1".into(),
        sender: sender.into(),
        sender_name: None,
        from_bot: false,
        not_a_message: false,
        chat: chat.into(),
        thread: None,
        workspace: Some("T1".into()),
        addressed,
        text: "hello".into(),
        attachments: Vec::new(),
        reply_context: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_channel::Addressed as A;

    fn settings(yaml: &str) -> ChannelSettings {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_channel_without_allowlists_answers_nobody() {
        let closed = settings("{}");
        assert_eq!(
            decide(&closed, &message("U1", "C1", A::Direct)),
            Decision::Refuse("user not in allow_users")
        );
    }

    #[test]
    fn allowlists_users_chats_and_workspaces_each_refuse_strangers() {
        let s = settings("allow_users: [U1]\nallow_chats: [C1]\nallow_workspaces: [T1]\n");
        assert_eq!(
            decide(&s, &message("U1", "C1", A::Mention)),
            Decision::Answer
        );
        assert!(matches!(
            decide(&s, &message("U2", "C1", A::Mention)),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(&s, &message("U1", "C2", A::Mention)),
            Decision::Refuse(_)
        ));
        let mut other_team = message("U1", "C1", A::Mention);
        other_team.workspace = Some("T9".into());
        assert!(matches!(decide(&s, &other_team), Decision::Refuse(_)));
        other_team.workspace = None;
        assert!(matches!(decide(&s, &other_team), Decision::Refuse(_)));
        let open = settings("allow_users: ['*']\n");
        assert_eq!(
            decide(&open, &message("anyone", "C7", A::Direct)),
            Decision::Answer
        );
    }

    #[test]
    fn only_direct_messages_and_mentions_are_answered_unless_ambient_is_on() {
        let s = settings("allow_users: ['*']\n");
        assert!(matches!(
            decide(&s, &message("U1", "C1", A::Ambient)),
            Decision::Ignore(_)
        ));
        let ambient = settings("allow_users: ['*']\nrespond_to: [ambient]\n");
        assert_eq!(
            decide(&ambient, &message("U1", "C1", A::Ambient)),
            Decision::Answer
        );
        assert!(matches!(
            decide(&ambient, &message("U1", "C1", A::Direct)),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn bots_edits_and_empty_messages_are_ignored() {
        let s = settings("allow_users: ['*']\n");
        let mut bot = message("B1", "C1", A::Mention);
        bot.from_bot = true;
        assert!(matches!(decide(&s, &bot), Decision::Ignore(_)));
        let mut edit = message("U1", "C1", A::Mention);
        edit.not_a_message = true;
        assert!(matches!(decide(&s, &edit), Decision::Ignore(_)));
        let mut empty = message("U1", "C1", A::Mention);
        empty.text = "  ".into();
        assert!(matches!(decide(&s, &empty), Decision::Ignore(_)));
    }
}
