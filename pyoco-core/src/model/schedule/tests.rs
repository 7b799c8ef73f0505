use super::*;

fn interval(created_at: f64, every: f64, start_at: Option<&str>) -> Schedule {
    let mut s = Schedule::new("s1".into(), "main".into(), created_at);
    apply_timing(
        &mut s,
        &TimingForm {
            interval_seconds: Some(every),
            start_at: start_at.map(str::to_string),
            ..Default::default()
        },
    )
    .unwrap();
    s
}

#[test]
fn datetimes_need_an_offset_like_the_original() {
    assert_eq!(
        parse_datetime("run_at", "2026-01-01T00:00:00Z").unwrap(),
        1_767_225_600.0
    );
    assert_eq!(
        parse_datetime("run_at", "2026-01-01T09:00:00.5+09:00").unwrap(),
        1_767_225_600.5
    );
    assert_eq!(
        parse_datetime("run_at", "2026-01-01T00:00:00")
            .unwrap_err()
            .0,
        "run_at must include timezone offset"
    );
    assert_eq!(
        parse_datetime("start_at", "2026-01-01").unwrap_err().0,
        "start_at must include timezone offset"
    );
    assert_eq!(
        parse_datetime("run_at", "tomorrow").unwrap_err().0,
        "run_at must be ISO 8601 datetime"
    );
}

#[test]
fn interval_anchor_and_first_slot_follow_the_original() {
    // No start_at: the anchor is created_at + interval.
    let s = interval(1000.0, 10.0, None);
    assert_eq!(s.start_at, Some(1010.0));
    assert_eq!(s.next_run_at, Some(1010.0));
    // A past start_at: the first anchor + k*interval strictly after created_at.
    let s = interval(1_767_225_625.0, 10.0, Some("2026-01-01T00:00:00Z"));
    assert_eq!(s.next_run_at, Some(1_767_225_630.0));
    // Slots are anchor + k * interval, never a sum of steps (0.1 * 3 is just above 0.3).
    assert_eq!(interval_slot_after(0.0, 0.1, 0.3), 3.0 * 0.1);
    assert_eq!(interval_slot_after(0.0, 0.1, 3.0 * 0.1), 4.0 * 0.1);
}

#[test]
fn timing_form_rules_and_messages() {
    let check = |form: TimingForm| {
        let mut s = Schedule::new("s".into(), "f".into(), 1000.0);
        apply_timing(&mut s, &form).map(|_| s).map_err(|e| e.0)
    };
    let msg = |form: TimingForm| check(form).unwrap_err();
    assert_eq!(
        msg(TimingForm::default()),
        "specify either run_at or interval_seconds"
    );
    assert_eq!(
        msg(TimingForm {
            run_at: Some("2099-01-01T00:00:00Z".into()),
            interval_seconds: Some(1.0),
            ..Default::default()
        }),
        "specify either run_at or interval_seconds"
    );
    assert_eq!(
        msg(TimingForm {
            cron: Some("* * * * *".into()),
            interval_seconds: Some(1.0),
            ..Default::default()
        }),
        "specify only one of run_at, interval_seconds or cron"
    );
    assert_eq!(
        msg(TimingForm {
            run_at: Some("1970-01-01T00:00:00Z".into()),
            ..Default::default()
        }),
        "run_at must be in the future"
    );
    assert_eq!(
        msg(TimingForm {
            run_at: Some("2099-01-01T00:00:00Z".into()),
            start_at: Some("2099-01-01T00:00:00Z".into()),
            ..Default::default()
        }),
        "start_at is only valid with interval_seconds"
    );
    assert_eq!(
        msg(TimingForm {
            interval_seconds: Some(0.0),
            ..Default::default()
        }),
        "interval_seconds must be positive"
    );
    assert_eq!(
        msg(TimingForm {
            cron: Some("61 * * * *".into()),
            ..Default::default()
        }),
        "invalid cron expression"
    );
    assert_eq!(
        msg(TimingForm {
            cron: Some("* * * *".into()),
            ..Default::default()
        }),
        "invalid cron expression"
    );
    assert_eq!(
        msg(TimingForm {
            cron: Some("* * * * *".into()),
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        }),
        "unknown timezone"
    );
    assert_eq!(
        msg(TimingForm {
            interval_seconds: Some(5.0),
            timezone: Some("UTC".into()),
            ..Default::default()
        }),
        "timezone is only valid with cron"
    );
    assert_eq!(
        msg(TimingForm {
            interval_seconds: Some(5.0),
            misfire: Some("later".into()),
            ..Default::default()
        }),
        "misfire must be skip or run_once"
    );
    let once = check(TimingForm {
        run_at: Some("2099-01-01T00:00:00Z".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(once.schedule_type, "once");
    assert_eq!(once.run_at, once.next_run_at);
    assert_eq!(once.misfire.as_deref(), Some("run_once"));
}

#[test]
fn cron_is_read_in_its_timezone() {
    // 2026-01-01T00:00:00Z is 09:00 in Tokyo; "0 10 * * *" there is 01:00Z.
    let rule = CronRule::parse("0 10 * * *", Some("Asia/Tokyo")).unwrap();
    assert_eq!(rule.next_after(1_767_225_600.0).unwrap(), 1_767_229_200.0);
    // Six fields: seconds first.
    let every_second = CronRule::parse("* * * * * *", None).unwrap();
    assert_eq!(every_second.next_after(10.5).unwrap(), 11.0);
    let mut s = Schedule::new("s".into(), "f".into(), 1_767_225_600.0);
    apply_timing(
        &mut s,
        &TimingForm {
            cron: Some("*/15 * * * *".into()),
            timezone: Some("Europe/Berlin".into()),
            misfire: Some("skip".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.schedule_type, "cron");
    assert_eq!(s.next_run_at, Some(1_767_226_500.0));
    // The original's dispatcher must never see a cron record as due; ours ignores that lease.
    assert_eq!(s.lease_until, Some(PYOCO_ONLY_LEASE));
    assert!(!s.leased_by_original(1_767_226_500.0));
    let mut legacy = s.clone();
    legacy.schedule_type = "interval".into();
    assert!(legacy.leased_by_original(1_767_226_500.0));
    assert_eq!(
        slot_after(&s, 1_767_226_500.0).unwrap(),
        Some(1_767_227_400.0)
    );
}

#[test]
fn plan_fires_on_time_slots_one_by_one() {
    let s = interval(1000.0, 1.0, None);
    assert_eq!(plan(&s, 1000.5, 3.0).unwrap(), None);
    let due = plan(&s, 1002.5, 3.0).unwrap().unwrap();
    assert_eq!(
        due,
        Due {
            slot: 1001.0,
            fire: true,
            next: Some(1002.0),
            missed: 0
        }
    );
}

#[test]
fn plan_applies_the_misfire_policy_to_slots_later_than_the_grace() {
    let mut s = interval(1000.0, 1.0, None);
    // run_once: one run for the missed slots, then the first slot after now.
    let due = plan(&s, 1100.5, 3.0).unwrap().unwrap();
    assert_eq!((due.fire, due.next, due.missed), (true, Some(1101.0), 0));
    // skip: no run; continue at the first slot within the grace.
    s.misfire = Some("skip".into());
    let due = plan(&s, 1100.5, 3.0).unwrap().unwrap();
    assert_eq!((due.fire, due.next, due.missed), (false, Some(1098.0), 97));
    // A paused schedule is never due.
    s.status = PAUSED.into();
    assert_eq!(plan(&s, 1100.5, 3.0).unwrap(), None);
}

#[test]
fn once_schedules_complete_after_their_slot() {
    let mut s = Schedule::new("s".into(), "f".into(), 1000.0);
    s.schedule_type = "once".into();
    s.run_at = Some(1010.0);
    s.next_run_at = Some(1010.0);
    let due = plan(&s, 1010.2, 3.0).unwrap().unwrap();
    assert_eq!((due.fire, due.next), (true, None));
    s.misfire = Some("skip".into());
    let due = plan(&s, 2000.0, 3.0).unwrap().unwrap();
    assert_eq!((due.fire, due.next, due.missed), (false, None, 1));
}

#[test]
fn slot_run_ids_are_deterministic_uuids() {
    let a = slot_run_id("s1", 1001.0);
    assert_eq!(a, slot_run_id("s1", 1001.0004));
    assert_ne!(a, slot_run_id("s1", 1002.0));
    assert_ne!(a, slot_run_id("s2", 1001.0));
    let u = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(u.get_version_num(), 8);
    assert_eq!(a.len(), 36);
}

#[test]
fn records_of_the_original_read_and_keep_unknown_fields() {
    let raw = r#"{"schedule_id":"x","flow_name":"f","tag":"default","status":"ACTIVE","schedule_type":"interval","workflow_yaml":"flow: {graph: a}","workflow_yaml_sha256":"h","workflow_yaml_bytes":16,"params":{},"tenant_id":null,"api_key_id":null,"created_at":1.5,"updated_at":1.5,"last_submitted_at":null,"last_run_id":null,"dispatch_count":0,"last_error":null,"lease_until":null,"run_at":null,"next_run_at":4.5,"interval_seconds":3.0,"start_at":4.5,"future":1}"#;
    let s: Schedule = serde_json::from_str(raw).unwrap();
    assert_eq!(s.misfire_policy(), Misfire::RunOnce);
    assert_eq!(s.extra["future"], 1);
    let view = s.view();
    assert_eq!(view.as_object().unwrap().len(), 23);
    assert!(view.get("workflow_yaml").is_none());
    assert!(view.get("lease_until").is_none());
    assert_eq!(view["interval_seconds"], 3.0);
    let back = serde_json::to_value(&s).unwrap();
    assert_eq!(back["future"], 1);
}

#[test]
fn list_order_is_active_first_then_next_run() {
    let mk = |id: &str, status: &str, next: Option<f64>| {
        let mut s = Schedule::new(id.into(), "f".into(), 5.0);
        s.status = status.into();
        s.next_run_at = next;
        s
    };
    let mut list = vec![
        mk("d", COMPLETED, None),
        mk("c", ACTIVE, Some(9.0)),
        mk("b", ACTIVE, Some(3.0)),
        mk("a", ACTIVE, Some(9.0)),
    ];
    sort_schedules(&mut list);
    let ids: Vec<_> = list.iter().map(|s| s.schedule_id.as_str()).collect();
    assert_eq!(ids, ["b", "a", "c", "d"]);
}
