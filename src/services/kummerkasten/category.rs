//! `/ticket`'s category menu. When teams take tickets from Discord (`franz team add NAME --category TEXT`), the
//! command first asks which of them a ticket is for: a private message with a select menu of their categories and
//! "Something else" (triage), as the panels of the Discord ticket bots do. The pick routes the ticket to that team
//! (akte records it as routed by the submitter's choice). Without a text, the pick is answered with the ticket
//! form; with one, the ticket is sent at once.
//!
//! The menu is read from the staff list at each `/ticket`, so a team added or changed needs no restart. A list
//! that cannot be read offers no menu (the ticket goes on, to triage) and says so in the log and the bot's last
//! problem: a broken staff list must not stop anyone from asking for help.

use std::path::Path;

use futures::StreamExt as _;
use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use super::{Context, Error, FORM_PATIENCE, NAME, connect, guard};

/// The most categories the menu offers: Discord's 25 options, less "Something else".
pub const MENU_MAX: usize = 24;
/// The value of "Something else": no team (no team may be called this).
const ELSE: &str = crate::lifecycle::routing::TRIAGE;

/// A team as the menu offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub team: String,
    pub label: String,
}

/// The categories offered now: the teams with a category text, by name, at most [`MENU_MAX`].
pub async fn offered(ctx: Context<'_>) -> Vec<Category> {
    let dir = ctx.data().staff_dir.clone();
    let read = tokio::task::spawn_blocking(move || categories_in(&dir))
        .await
        .map_err(|error| anyhow::anyhow!("a read of the staff list ended abnormally: {error}"))
        .and_then(|read| read);
    match read {
        Ok(categories) => categories,
        Err(error) => {
            let problem = format!("/ticket offers no categories: the teams cannot be read ({error:#})");
            tracing::warn!("{problem}");
            ctx.data().troubles.report(NAME, problem);
            Vec::new()
        }
    }
}

fn categories_in(staff_dir: &Path) -> anyhow::Result<Vec<Category>> {
    let teams = crate::people::teams_in(staff_dir)?;
    let offered = teams.into_iter().filter_map(|team| Some(Category { label: team.category?, team: team.name }));
    Ok(offered.take(MENU_MAX).collect())
}

/// The private message that asks for a category: a select menu with `custom_id`.
pub fn menu(custom_id: &str, categories: &[Category]) -> Value {
    let mut options: Vec<Value> = categories
        .iter()
        .map(|category| json!({"label": crate::discord::clip(&category.label, 100), "value": category.team}))
        .collect();
    options.push(json!({"label": "Something else", "value": ELSE}));
    json!({
        "type": 4,
        "data": {
            "flags": 64,
            "content": "What is your ticket about?",
            "allowed_mentions": {"parse": []},
            "components": [{"type": 1, "components": [{
                "type": 3,
                "custom_id": custom_id,
                "placeholder": "Choose what fits best",
                "min_values": 1,
                "max_values": 1,
                "options": options,
            }]}],
        },
    })
}

/// The team a pick of `values` chose: `None` for "Something else", or for a value the menu did not offer (the
/// menu may have changed since it was shown; such a ticket goes to triage rather than to a team nobody offered).
pub fn chosen(values: &[String], categories: &[Category]) -> Option<String> {
    let value = values.first()?;
    categories.iter().find(|category| category.team == *value).map(|category| category.team.clone())
}

/// Asks for the category of the ticket `/ticket` was given `message` for (or none: then the form follows the pick).
/// `None` when the user never picks (or closes the form), or shutdown comes first.
pub async fn ask(
    ctx: Context<'_>,
    categories: &[Category],
    message: Option<String>,
) -> Result<Option<(String, Option<String>)>, Error> {
    let custom_id = format!("franz:category:{}", ctx.interaction.id);
    let http = &ctx.serenity_context().http;
    let menu = menu(&custom_id, categories);
    http.create_interaction_response(ctx.interaction.id, &ctx.interaction.token, &menu, Vec::new())
        .await
        .map_err(|error| connect::describe(&error))?;
    ctx.has_sent_initial_response.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, user) = (ctx.data().guild, ctx.author().id);
    // The picks of this menu, by the user it was shown to (Discord shows it to nobody else).
    let picks = || {
        let wanted = custom_id.clone();
        serenity::ComponentInteractionCollector::new(&ctx.serenity_context().shard)
            .filter(move |pick| {
                pick.data.custom_id == wanted && pick.user.id == user && guard::admits(served, pick.guild_id)
            })
            .timeout(FORM_PATIENCE)
    };
    let pick = tokio::select! {
        pick = picks().next() => pick,
        _ = ctx.data().shutdown.cancelled() => None,
    };
    let Some(pick) = pick else { return Ok(None) };
    let category = chosen(&values_of(&pick), categories);
    let answer = |body: Value| async move {
        http.create_interaction_response(pick.id, &pick.token, &body, Vec::new())
            .await
            .map_err(|error| Error::from(connect::describe(&error)))
    };
    match message {
        Some(message) => {
            answer(json!({"type": 7, "data": {"content": "Sending your ticket…", "components": []}})).await?;
            Ok(Some((message, category)))
        }
        None => {
            use poise::Modal as _;
            // poise's convention, as for the form `/ticket` opens itself: the form's custom id is the id of the
            // interaction it answers.
            let form_id = pick.id.to_string();
            let form = serde_json::to_value(super::TicketForm::create(None, form_id.clone()))?;
            // The menu stays when the form opens: a user who closed the form, or picked wrong, picks again, and
            // gets the form again; the ticket goes where the last pick says.
            let mut again = picks().stream();
            answer(form.clone()).await?;
            let submitted = super::await_form(ctx, form_id);
            tokio::pin!(submitted);
            let mut category = category;
            loop {
                tokio::select! {
                    message = &mut submitted => return Ok(message?.map(|message| (message, category))),
                    Some(pick) = again.next() => {
                        category = chosen(&values_of(&pick), categories);
                        let opened = http.create_interaction_response(pick.id, &pick.token, &form, Vec::new());
                        if let Err(error) = opened.await {
                            tracing::warn!("could not open the ticket form again: {}", connect::describe(&error));
                        }
                    }
                }
            }
        }
    }
}

/// The values a pick of the menu chose.
fn values_of(pick: &serenity::ComponentInteraction) -> Vec<String> {
    match &pick.data.kind {
        serenity::ComponentInteractionDataKind::StringSelect { values } => values.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing() -> Vec<Category> {
        vec![Category { team: "billing".into(), label: "Invoices and refunds".into() }]
    }

    #[test]
    fn the_menu_offers_each_category_and_something_else_privately() {
        let menu = menu("franz:category:1", &billing());
        assert_eq!(menu["data"]["flags"], 64);
        let select = &menu["data"]["components"][0]["components"][0];
        assert_eq!(select["custom_id"], "franz:category:1");
        assert_eq!(
            select["options"],
            json!([{"label": "Invoices and refunds", "value": "billing"}, {"label": "Something else", "value": "triage"}])
        );
    }

    #[test]
    fn a_pick_routes_only_to_a_team_the_menu_offered() {
        assert_eq!(chosen(&["billing".into()], &billing()), Some("billing".into()));
        assert_eq!(chosen(&["triage".into()], &billing()), None);
        assert_eq!(chosen(&["support".into()], &billing()), None, "not offered");
        assert_eq!(chosen(&[], &billing()), None);
    }
}
