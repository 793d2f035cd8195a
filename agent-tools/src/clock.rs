//! `clock`: the current date and time in a time zone, and date arithmetic.
//!
//! Uses jiff with the IANA database bundled into the binary, so answers do not depend on
//! the machine's zoneinfo files. Read-only: it never changes anything.

use agent_core::{ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use jiff::{Span, SpanRound, Timestamp, Unit, ZonedDateTime, civil::Date, tz::TimeZone};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// What the clock should do.
/// What the clock should do.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClockAction {
    /// The current date and time (uses `time_zone`).
    Now,
    /// A date plus (or minus, with negative numbers) some years, months, weeks and days
    /// (uses `date`, `years`, `months`, `weeks`, `days`).
    AddToDate,
    /// The time between two dates, in days and in years, months and days (uses `from`, `to`).
    DaysBetween,
}

/// The clock's arguments: one flat object (a top-level `oneOf` is refused by several
/// providers), with the fields each action uses.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClockArgs {
    /// What to do: "now", "add_to_date" or "days_between".
    pub action: ClockAction,
    /// For "now": an IANA time zone, e.g. "Europe/Paris" or "America/New_York". Default: UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// For "add_to_date": the date, as YYYY-MM-DD.
    #[serde(default)]
    pub date: Option<String>,
    /// For "add_to_date": years to add.
    #[serde(default)]
    pub years: i16,
    /// For "add_to_date": months to add.
    #[serde(default)]
    pub months: i32,
    /// For "add_to_date": weeks to add.
    #[serde(default)]
    pub weeks: i32,
    /// For "add_to_date": days to add.
    #[serde(default)]
    pub days: i32,
    /// For "days_between": the first date, YYYY-MM-DD.
    #[serde(default)]
    pub from: Option<String>,
    /// For "days_between": the second date, YYYY-MM-DD.
    #[serde(default)]
    pub to: Option<String>,
}

/// The `clock` tool.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use agent_core::{Tool, ToolContext};
/// use agent_tools::Clock;
/// let out = Tool::call(&Clock::new(),
///     serde_json::json!({"action": "days_between", "from": "2024-01-01", "to": "2024-03-01"}), &ToolContext::detached())
///     .await
///     .unwrap()
///     .into_content();
/// assert!(out.contains("\"days\":60"), "{out}");
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl Clock {
    /// The clock.
    pub fn new() -> Self {
        Clock
    }
}

fn parse_date(field: &str, action: &str, value: Option<&str>) -> Result<Date, ToolError> {
    let value = value.ok_or_else(|| {
        ToolError::invalid_arguments(format!(
            "`{field}` (YYYY-MM-DD) is required for \"{action}\""
        ))
    })?;
    value.trim().parse::<Date>().map_err(|e| {
        ToolError::invalid_arguments(format!("`{field}` must be a date like 2025-03-14 ({e})"))
    })
}

#[async_trait]
impl TypedTool for Clock {
    type Args = ClockArgs;

    fn name(&self) -> &str {
        "clock"
    }

    fn description(&self) -> &str {
        "Tells the current date and time in a time zone (action \"now\"), adds years, months, \
         weeks or days to a date (\"add_to_date\"), and counts the time between two dates \
         (\"days_between\"). Use it instead of guessing today's date."
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }

    fn examples(&self) -> Vec<agent_core::ToolExample> {
        use agent_core::ToolExample;
        vec![
            ToolExample::new(
                "What is the time in New York?",
                json!({"action": "now", "time_zone": "America/New_York"}),
            )
            .with_outcome(
                r#"{"date":"2025-03-14","time":"09:30:00","time_zone":"America/New_York","utc_offset":"-04","weekday":"Friday"}"#,
                "It is 09:30 on Friday 2025-03-14 in New York.",
            ),
            ToolExample::new(
                "How many days are there from 2023-05-01 to 2023-06-15?",
                json!({"action": "days_between", "from": "2023-05-01", "to": "2023-06-15"}),
            )
            .with_outcome(
                r#"{"days":45,"months":1,"remaining_days":14,"years":0}"#,
                "45 days.",
            ),
            ToolExample::new(
                "Which date is 2 weeks after 2024-07-01?",
                json!({"action": "add_to_date", "date": "2024-07-01", "weeks": 2}),
            )
            .with_outcome(
                r#"{"date":"2024-07-15","weekday":"Monday"}"#,
                "2024-07-15, a Monday.",
            ),
        ]
    }

    async fn call(&self, args: ClockArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        match args.action {
            ClockAction::Now => {
                let name = args.time_zone.unwrap_or_else(|| "UTC".to_owned());
                let tz = TimeZone::get(name.trim()).map_err(|_| {
                    ToolError::invalid_arguments(format!(
                        "unknown time zone `{name}`; use an IANA name such as \"Europe/Paris\", \
                         \"Asia/Tokyo\" or \"UTC\""
                    ))
                })?;
                let now: ZonedDateTime = Timestamp::now().to_zoned_datetime(tz);
                Ok(json!({
                    "time_zone": name.trim(),
                    "date": now.date().to_string(),
                    "time": now.time().round(Unit::Second).map(|t| t.to_string()).unwrap_or_default(),
                    "weekday": format!("{:?}", now.weekday()),
                    "utc_offset": now.offset().to_string(),
                    "iso8601": now.timestamp().to_string(),
                })
                .into())
            }
            ClockAction::AddToDate => {
                let start = parse_date("date", "add_to_date", args.date.as_deref())?;
                let span = Span::new()
                    .try_years(args.years)
                    .and_then(|s| s.try_months(args.months))
                    .and_then(|s| s.try_weeks(args.weeks))
                    .and_then(|s| s.try_days(args.days))
                    .map_err(|e| {
                        ToolError::invalid_arguments(format!("the amounts are out of range ({e})"))
                    })?;
                let end = start.checked_add(span).map_err(|e| {
                    ToolError::invalid_arguments(format!("the result is out of range ({e})"))
                })?;
                Ok(
                    json!({"date": end.to_string(), "weekday": format!("{:?}", end.weekday())})
                        .into(),
                )
            }
            ClockAction::DaysBetween => {
                let a = parse_date("from", "days_between", args.from.as_deref())?;
                let b = parse_date("to", "days_between", args.to.as_deref())?;
                let days = a
                    .until((Unit::Day, b))
                    .map_err(|e| ToolError::failed(format!("cannot compute the difference ({e})")))?
                    .get_days();
                let calendar = a
                    .until((Unit::Year, b))
                    .and_then(|s| s.round(SpanRound::new().largest(Unit::Year).relative(a)))
                    .map_err(|e| {
                        ToolError::failed(format!("cannot compute the difference ({e})"))
                    })?;
                Ok(json!({
                    "days": days,
                    "years": calendar.get_years(),
                    "months": calendar.get_months(),
                    "remaining_days": calendar.get_days(),
                })
                .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::Tool;

    async fn call(args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
        let out = Tool::call(&Clock::new(), args, &ToolContext::detached())
            .await?
            .into_content();
        Ok(serde_json::from_str(&out).unwrap())
    }

    #[tokio::test]
    async fn now_in_a_named_zone_and_unknown_zones_are_refused() {
        let v = call(json!({"action": "now", "time_zone": "Asia/Tokyo"}))
            .await
            .unwrap();
        assert_eq!(v["utc_offset"], "+09");
        assert_eq!(v["date"].as_str().unwrap().len(), 10);
        let e = call(json!({"action": "now", "time_zone": "Mars/Olympus"}))
            .await
            .unwrap_err();
        assert!(e.message.contains("unknown time zone `Mars/Olympus`"));
    }

    #[tokio::test]
    async fn date_arithmetic_handles_month_ends_and_leap_years() {
        let v = call(json!({"action": "add_to_date", "date": "2024-01-31", "months": 1}))
            .await
            .unwrap();
        assert_eq!(v["date"], "2024-02-29");
        let v = call(json!({"action": "add_to_date", "date": "2024-03-01", "days": -1}))
            .await
            .unwrap();
        assert_eq!(v["date"], "2024-02-29");
        let v = call(json!({"action": "days_between", "from": "2020-02-15", "to": "2024-03-20"}))
            .await
            .unwrap();
        assert_eq!(
            (
                v["years"].as_i64(),
                v["months"].as_i64(),
                v["remaining_days"].as_i64()
            ),
            (Some(4), Some(1), Some(5))
        );
        let e = call(json!({"action": "add_to_date", "date": "31/01/2024"}))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("`date` must be a date like 2025-03-14"),
            "{}",
            e.message
        );
        let e = call(json!({"action": "days_between", "from": "2024-01-01"}))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("`to` (YYYY-MM-DD) is required"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_schema_is_one_flat_object_every_provider_accepts() {
        let clock = std::sync::Arc::new(Clock::new()) as std::sync::Arc<dyn Tool>;
        let tools = agent_core::ToolSet::new([clock]).unwrap();
        let schema = &tools.specs()[0].parameters;
        assert_eq!(schema["type"], "object");
        assert!(schema.get("oneOf").is_none() && schema.get("anyOf").is_none());
        assert_eq!(schema["required"], json!(["action"]));
    }
}
