//! Which grammar rules are keywords and punctuation (skipped when a builder takes its arguments).

use super::Rule;

pub(super) fn is_keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::open
            | Rule::close
            | Rule::equals
            | Rule::lparen
            | Rule::rparen
            | Rule::comma
            | Rule::dash
            | Rule::kw_use
            | Rule::kw_allow_hosts
            | Rule::kw_matrix
            | Rule::kw_playbook
            | Rule::kw_hub
            | Rule::kw_order
            | Rule::kw_rule
            | Rule::kw_namespace
            | Rule::kw_on_failure
            | Rule::kw_let
            | Rule::kw_env
            | Rule::kw_component
            | Rule::kw_stage
            | Rule::kw_deployment
            | Rule::kw_container
            | Rule::kw_image
            | Rule::kw_from
            | Rule::kw_to
            | Rule::kw_migrations
            | Rule::kw_files
            | Rule::kw_dialect
            | Rule::kw_queries
            | Rule::kw_release
            | Rule::kw_role
            | Rule::kw_serves
            | Rule::kw_blue_green
            | Rule::kw_service
            | Rule::kw_selector
            | Rule::kw_blue
            | Rule::kw_green
            | Rule::kw_context
            | Rule::kw_after
            | Rule::kw_rolling
            | Rule::kw_canary
            | Rule::kw_restart
            | Rule::kw_undo
            | Rule::kw_revision
            | Rule::kw_switch
            | Rule::kw_scale
            | Rule::kw_pause
            | Rule::kw_approve
            | Rule::kw_guard
            | Rule::kw_http
            | Rule::kw_logs
            | Rule::kw_matches
            | Rule::kw_ready
            | Rule::kw_hook
            | Rule::kw_rhai
            | Rule::kw_header
            | Rule::kw_bearer
            | Rule::kw_json
            | Rule::kw_body
            | Rule::kw_expect
            | Rule::kw_contains
            | Rule::kw_check
            | Rule::kw_rollback
            | Rule::kw_none
            | Rule::kw_metric
            | Rule::kw_monitor
            | Rule::kw_budget
            | Rule::kw_query
            | Rule::kw_below
            | Rule::kw_above
            | Rule::kw_between
            | Rule::kw_baseline
            | Rule::kw_failure_limit
            | Rule::kw_no_data
            | Rule::kw_traffic
            | Rule::kw_steps
            | Rule::kw_fleet
            | Rule::kw_on
            | Rule::kw_failure
            | Rule::kw_stop
            | Rule::kw_shared
            | Rule::kw_in
            | Rule::kw_cluster
            | Rule::kw_clusters
            | Rule::kw_wave
            | Rule::kw_parallel
            | Rule::kw_soak
            | Rule::star
    )
}
