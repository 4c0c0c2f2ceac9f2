//! The entries of `ktplay explain` for the front half: the codes of the parser and the checker.
//! The back half (compat, script, run, hazards) is in `entries_back.rs`.

use super::{Entry, Place};

/// The syntax and check codes.
pub(super) static FRONT: &[Entry] = &[
    // ------------------------------------------------------------------ syntax
    Entry {
        code: "ktplay::syntax::unexpected",
        warning: false,
        place: Place::Stage,
        summary: "the text does not follow the grammar at this point",
        meaning: "The parser met a token it cannot place: an unclosed block or string, a keyword where a \
                  name belongs, a statement outside a stage. The message names, in words, what it \
                  expected at that point.",
        failing: "rolling api timout 5m",
        fixed: "rolling api timeout 5m",
    },
    Entry {
        code: "ktplay::syntax::not_utf8",
        warning: false,
        place: Place::Unverified,
        summary: "the file is not valid UTF-8",
        meaning: "Playbooks are UTF-8 text. The message gives the offset of the first byte that is \
                  not; an editor that saved the file in Latin-1 or UTF-16 is the usual cause.",
        failing: "approve \"d\\xE9ployer ?\"     # the byte 0xE9 (Latin-1 é)",
        fixed: "approve \"déployer ?\"         # saved as UTF-8",
    },
    Entry {
        code: "ktplay::syntax::too_deep",
        warning: false,
        place: Place::Unverified,
        summary: "blocks nested deeper than 64 levels",
        meaning: "ktplay refuses nesting past 64 levels before parsing, so a hostile file cannot \
                  exhaust the stack. No playbook needs more than a few levels; the cause is nearly \
                  always unbalanced `{` or `[` (in a `json` body).",
        failing: "json [[[[[[[[ … 70 levels … ]]]]]]]]",
        fixed: "json {\"mode\": \"drain\"}",
    },
    Entry {
        code: "ktplay::syntax::bad_escape",
        warning: false,
        place: Place::Stage,
        summary: "an unknown escape in a string",
        meaning: "Strings know `\\\"`, `\\\\`, `\\n`, `\\t` and `\\$`. Any other backslash sequence \
                  is refused rather than kept as is; a regex or a script belongs in a raw string \
                  `\"\"\"…\"\"\"`.",
        failing: "guard logs api matches \"migrated \\d+\"",
        fixed: "guard logs api matches \"migrated \\\\d+\"",
    },
    Entry {
        code: "ktplay::syntax::bad_interpolation",
        warning: false,
        place: Place::Stage,
        summary: "`${…}` holds something that is neither a let nor a component field",
        meaning: "Inside strings, `${name}` reads a let and `${component.field}` a component field \
                  (`from`, `to`, `image`, `name`, `idle`, `live`). Anything else (spaces, several \
                  dots, an expression) is refused.",
        failing: "guard http GET \"${api url}/health\"",
        fixed: "guard http GET \"${api_url}/health\"",
    },
    Entry {
        code: "ktplay::syntax::interpolation_in_script",
        warning: false,
        place: Place::Stage,
        summary: "a Rhai script written as a string contains `${…}`",
        meaning: "Scripts are compiled by `check` once, for every env; text pasted into them would \
                  change the script per env and could carry a secret into it. Scripts read values \
                  through `vars` instead.",
        failing: "guard rhai \"http_get(\\\"${api_url}/health\\\").status == 200\"",
        fixed: "guard rhai \"\"\"http_get(vars.api_url + \"/health\").status == 200\"\"\"",
    },
    Entry {
        code: "ktplay::syntax::bad_json",
        warning: false,
        place: Place::Stage,
        summary: "the value after `json` is not valid JSON",
        meaning: "An HTTP guard's `json` body is sent as written, so it must be JSON: quoted keys, \
                  no trailing comma, `null`/`true`/`false` in lower case.",
        failing: "guard http POST \"https://a.example.com/x\" {\n  json {\"replicas\": 01}\n}",
        fixed: "guard http POST \"https://a.example.com/x\" {\n  json {\"replicas\": 1}\n}",
    },
    // ------------------------------------------------------------------ check
    Entry {
        code: "ktplay::check::unknown_component",
        warning: false,
        place: Place::Stage,
        summary: "a statement names a component the playbook does not declare",
        meaning: "Every statement acts on a `component` of its playbook. A misspelt name would act \
                  on nothing, so it is an error, with the closest declared name as a hint.",
        failing: "rolling apy",
        fixed: "rolling api",
    },
    Entry {
        code: "ktplay::check::unknown_let",
        warning: false,
        place: Place::Stage,
        summary: "`${name}` or `bearer name` reads a let that is not in scope",
        meaning: "A let is in scope if the playbook declares it, or every env does. A let that only \
                  some envs declare fails for the others, and the message names them.",
        failing: "guard http GET \"${gateway_url}/health\"   # only env staging defines it",
        fixed: "guard http GET \"${api_url}/health\"       # every env defines it",
    },
    Entry {
        code: "ktplay::check::unknown_env",
        warning: false,
        place: Place::Playbook,
        summary: "`after` names an env the playbook does not declare",
        meaning: "`after staging` is the promotion gate of an env; it must name another env of the \
                  same playbook.",
        failing: "env qa { after stagin }",
        fixed: "env qa { after staging }",
    },
    Entry {
        code: "ktplay::check::unknown_matrix",
        warning: false,
        place: Place::Playbook,
        summary: "`matrix NAME` names no matrix in scope",
        meaning: "A playbook's matrix is declared in the same file, in a file it `use`s, or built in \
                  (`keeptrusts`).",
        failing: "matrix keeptrust",
        fixed: "matrix keeptrusts",
    },
    Entry {
        code: "ktplay::check::unknown_field",
        warning: false,
        place: Place::Stage,
        summary: "`${component.field}` names a field components do not have",
        meaning: "Component fields are `from`, `to`, `image` and `name`, and for blue-green \
                  components `idle` and `live`.",
        failing: "guard http GET \"https://${console.colour}.example.com/health\"",
        fixed: "guard http GET \"https://${console.idle}.example.com/health\"",
    },
    Entry {
        code: "ktplay::check::duplicate",
        warning: false,
        place: Place::Playbook,
        summary: "two things of one kind share a name",
        meaning: "Components, stages, envs, lets (in one scope), playbooks (in one file) and matrix \
                  rows must be unique: the second would silently win.",
        failing: "stage s { restart api }   # a stage `s` exists",
        fixed: "stage s-restart { restart api }",
    },
    Entry {
        code: "ktplay::check::wrong_kind",
        warning: false,
        place: Place::Stage,
        summary: "a value of the wrong kind (a duration where a status belongs, …)",
        meaning: "Literals are classified after parsing, so the message says what was expected and \
                  what was found: an HTTP status, a duration, a version, a version pattern, a \
                  percent, a count.",
        failing: "guard http GET \"https://a.example.com/health\" expect 30s",
        fixed: "guard http GET \"https://a.example.com/health\" expect 200 within 30s",
    },
    Entry {
        code: "ktplay::check::status_range",
        warning: false,
        place: Place::Stage,
        summary: "an HTTP status outside 100–599",
        meaning: "No server answers with such a status, so the guard could never pass.",
        failing: "guard http GET \"https://a.example.com/health\" expect 2000",
        fixed: "guard http GET \"https://a.example.com/health\" expect 200",
    },
    Entry {
        code: "ktplay::check::weight_range",
        warning: false,
        place: Place::Stage,
        summary: "a canary weight outside 1–99%",
        meaning: "A canary takes a share of the replicas; 0% tests nothing and 100% is a rolling \
                  update without a way back.",
        failing: "canary api weight 100% { guard ready api }",
        fixed: "canary api weight 10% { guard ready api }",
    },
    Entry {
        code: "ktplay::check::zero_duration",
        warning: false,
        place: Place::Stage,
        summary: "a duration of zero",
        meaning: "A zero `timeout` or `within` fails at once and a zero `pause` or `for` does \
                  nothing; either is a mistake.",
        failing: "rolling api timeout 0s",
        fixed: "rolling api timeout 10m",
    },
    Entry {
        code: "ktplay::check::out_of_range",
        warning: false,
        place: Place::Stage,
        summary: "a number outside what Kubernetes accepts (replicas, surge, revisions)",
        meaning: "`scale` takes 0–10,000 replicas; `max_unavailable` takes up to 10,000 pods or \
                  100%, `max_surge` up to 10,000 pods or 1000%. The message says the range.",
        failing: "scale api 20000",
        fixed: "scale api 20",
    },
    Entry {
        code: "ktplay::check::invalid_k8s_name",
        warning: false,
        place: Place::Playbook,
        summary: "a deployment, service or namespace name Kubernetes refuses",
        meaning: "Kubernetes names are lower-case DNS labels: letters, digits and `-`, at most 63 \
                  characters, starting and ending with a letter or digit. The help suggests the \
                  nearest valid name.",
        failing: "component edge {\n  deployment \"edge_proxy\"\n  image \"keeptrusts/edge\"\n  from 1.4.0\n  to 1.5.0\n}",
        fixed: "component edge {\n  deployment \"edge-proxy\"\n  image \"keeptrusts/edge\"\n  from 1.4.0\n  to 1.5.0\n}",
    },
    Entry {
        code: "ktplay::check::image_with_tag",
        warning: false,
        place: Place::Playbook,
        summary: "a component's `image` carries a tag",
        meaning: "ktplay sets the tag itself from `from`/`to`; a tag in `image` would be doubled or \
                  silently replaced.",
        failing: "component edge {\n  deployment \"edge\"\n  image \"keeptrusts/edge:1.5.0\"\n  from 1.4.0\n  to 1.5.0\n}",
        fixed: "component edge {\n  deployment \"edge\"\n  image \"keeptrusts/edge\"\n  from 1.4.0\n  to 1.5.0\n}",
    },
    Entry {
        code: "ktplay::check::blue_green_misuse",
        warning: false,
        place: Place::Stage,
        summary: "a statement that does not fit the component's kind",
        meaning: "`rolling` and `canary` change a deployment in place, so they cannot act on a \
                  blue-green component; `switch` and `blue_green` need one.",
        failing: "rolling api\nrolling console       # console is blue-green",
        fixed: "rolling api\nblue_green console {\n  guard ready console\n}",
    },
    Entry {
        code: "ktplay::check::missing_hook",
        warning: false,
        place: Place::Stage,
        summary: "a `guard hook` file cannot be read",
        meaning: "Hook paths are relative to the playbook file; `check` reads and compiles every \
                  hook, so a missing one fails before any run.",
        failing: "guard hook \"hooks/smoke.rhai\"        # no such file next to the playbook",
        fixed: "guard hook \"hooks/smoke-test.rhai\"",
    },
    Entry {
        code: "ktplay::check::missing_use",
        warning: false,
        place: Place::File,
        summary: "a `use`d file cannot be read or parsed",
        meaning: "`use` paths are relative to the file that says `use`. The used file's own \
                  problems are reported in that file.",
        failing: "use \"matrices/sharde.ktplay\"",
        fixed: "use \"matrices/shared.ktplay\"",
    },
    Entry {
        code: "ktplay::check::use_cycle",
        warning: false,
        place: Place::File,
        summary: "files `use` each other in a cycle",
        meaning: "`use` brings matrices into scope; a cycle has no first file. The message shows \
                  the chain.",
        failing: "use \"playbook.ktplay\"     # in playbook.ktplay itself",
        fixed: "use \"matrices/shared.ktplay\"",
    },
    Entry {
        code: "ktplay::check::after_cycle",
        warning: false,
        place: Place::Playbook,
        summary: "envs wait for each other through `after` in a cycle",
        meaning: "Promotion runs one way (staging, then prod); with a cycle no env could ever run \
                  first.",
        failing: "env qa { after canary }\nenv canary { after qa }",
        fixed: "env qa { }\nenv canary { after qa }",
    },
    Entry {
        code: "ktplay::check::secret_in_url",
        warning: false,
        place: Place::Stage,
        summary: "a secret (`env(\"…\")` let) is interpolated into a URL",
        meaning: "URLs are printed in plans, logs and journals. Secrets travel in headers, which \
                  ktplay never prints.",
        failing: "guard http GET \"https://a.example.com/health?token=${token}\"   # let token = env(\"API_TOKEN\")",
        fixed: "guard http GET \"https://a.example.com/health\" { bearer token }",
    },
    Entry {
        code: "ktplay::check::unknown_role",
        warning: false,
        place: Place::Playbook,
        summary: "a component's `role` is neither the matrix's hub nor one of its columns",
        meaning: "`role` says which matrix column a component is checked as. A role the matrix \
                  does not know would take the component out of every compatibility check, so a \
                  misspelling would let a forbidden order pass.",
        failing: "matrix keeptrusts\ncomponent edge {\n  deployment \"edge\"\n  image \"keeptrusts/edge\"\n  role gatway\n  from 1.4.0\n  to 1.5.0\n}",
        fixed: "matrix keeptrusts\ncomponent edge {\n  deployment \"edge\"\n  image \"keeptrusts/edge\"\n  role gateway\n  from 1.4.0\n  to 1.5.0\n}",
    },
    Entry {
        code: "ktplay::check::no_progress",
        warning: false,
        place: Place::Stage,
        summary: "`max_unavailable 0` together with `max_surge 0`",
        meaning: "A rolling update that may neither take a pod down nor add one can never \
                  progress; Kubernetes refuses it.",
        failing: "rolling api max_unavailable 0 max_surge 0",
        fixed: "rolling api max_unavailable 0 max_surge 1",
    },
    Entry {
        code: "ktplay::check::downgrade",
        warning: true,
        place: Place::Stage,
        summary: "a component (or a statement's `to`) goes to an older version",
        meaning: "Going down is sometimes intended (undoing a bad release) but usually a swapped \
                  `from`/`to`. A downgrade is only safe when every migration is backward-compatible.",
        failing: "rolling api to 1.4.0          # api is at 1.4.2",
        fixed: "rolling api to 1.5.0",
    },
    Entry {
        code: "ktplay::check::no_way_back",
        warning: true,
        place: Place::Stage,
        summary: "a stage with actions says `rollback none` (or has an empty `rollback { }`) while the playbook rolls back",
        meaning: "Under `on_failure rollback` (the default) a failure rolls back every stage; \
                  `rollback none` (or an empty `rollback { }`, which means the same) leaves this \
                  stage's changes in place, which contradicts it. Not reported when every \
                  component the stage's actions change has `migrations forward_only`: for those \
                  `rollback none` is the right answer (they cannot go back; fix forward).",
        failing: "rolling api\nrollback none",
        fixed: "rolling api\nrollback {\n  undo api\n}",
    },
    Entry {
        code: "ktplay::check::monitor_rate",
        warning: false,
        place: Place::Playbook,
        summary: "a `monitor` probes faster than one request every 10ms",
        meaning: "A monitor measures what the users of the system see during the run; it must \
                  not become their load. `every D` sets its rate (one request every D, 100ms by \
                  default); more than 100 requests a second is refused.",
        failing: "monitor web GET \"https://web.example.com/healthz\" every 1ms budget failures 0",
        fixed: "monitor web GET \"https://web.example.com/healthz\" every 100ms budget failures 0",
    },
    Entry {
        code: "ktplay::check::monitor_budget",
        warning: true,
        place: Place::Playbook,
        summary: "a `monitor`'s budget can never be judged: none at all, `budget failures 100%`, or an outage shorter than the probe interval",
        meaning: "A monitor fails the run when its budget is exceeded. Without a budget its \
                  numbers are reported but never fail anything; `budget failures 100%` can never \
                  be exceeded; and an outage is measured in probes, so `budget outage D` with D \
                  below `every` means `budget failures 0` (one failed request already counts as \
                  one interval of outage).",
        failing: "monitor web GET \"https://web.example.com/healthz\" every 1s budget outage 200ms",
        fixed: "monitor web GET \"https://web.example.com/healthz\" every 100ms budget outage 200ms",
    },
    Entry {
        code: "ktplay::check::missing_entry",
        warning: false,
        place: Place::Playbook,
        summary: "a required entry is missing (a component's `image`, `from`, …)",
        meaning: "Components need `deployment` (or `blue_green`), `image`, `from` and `to`; \
                  blue-green blocks need `service`, `selector`, `blue` and `green`. The message \
                  names what is missing.",
        failing: "component edge {\n  deployment \"edge\"\n  from 1.4.0\n}",
        fixed: "component edge {\n  deployment \"edge\"\n  image \"keeptrusts/edge\"\n  from 1.4.0\n  to 1.5.0\n}",
    },
    Entry {
        code: "ktplay::check::invalid_value",
        warning: false,
        place: Place::Stage,
        summary: "a word outside the set its entry allows (`on_failure stop`, method `FETCH`)",
        meaning: "Some entries take one of a few words: `on_failure rollback|halt`, `migrations \
                  backward_compatible|forward_only`, HTTP methods, `allow_hosts` patterns. The help \
                  lists the allowed ones.",
        failing: "guard http FETCH \"https://a.example.com/health\"",
        fixed: "guard http GET \"https://a.example.com/health\"",
    },
    Entry {
        code: "ktplay::check::misplaced",
        warning: false,
        place: Place::Stage,
        summary: "something valid elsewhere, but not here",
        meaning: "Only guards stand inside `canary` and `blue_green` blocks; each statement takes \
                  only its own options (`weight` and `for` belong to `canary`); `deployment` and \
                  `blue_green` exclude each other; some strings take no interpolation.",
        failing: "canary api weight 10% {\n  pause 1m\n}",
        fixed: "pause 1m\ncanary api weight 10% {\n  guard ready api\n}",
    },
    Entry {
        code: "ktplay::check::bad_regex",
        warning: false,
        place: Place::Stage,
        summary: "a `guard logs … matches` pattern is not a valid regular expression",
        meaning: "The pattern is a Rust `regex` (no look-around, no back-references); it is \
                  compiled by `check` so the guard cannot fail for that reason mid-run.",
        failing: "guard logs api matches \"migrated (\"",
        fixed: "guard logs api matches \"migrated \\\\(ok\\\\)\"",
    },
    Entry {
        code: "ktplay::check::bad_matrix",
        warning: false,
        place: Place::File,
        summary: "a matrix that cannot be used (no hub, an empty range, rows and a rule together)",
        meaning: "A matrix has a `hub` and either rows or a `rule`; each row's ranges run from low \
                  to high and name known components.",
        failing: "matrix mine {\n  order api gateway\n  api 1.5.x current { gateway 1.5.x - 1.4.x }\n}",
        fixed: "matrix mine {\n  hub api\n  api 1.5.x current { gateway 1.4.x - 1.5.x }\n}",
    },
    Entry {
        code: "ktplay::check::shadowed_matrix",
        warning: true,
        place: Place::File,
        summary: "a declared matrix has the name of a built-in one",
        meaning: "The declaration is used instead of the built-in matrix in this file and every \
                  file that `use`s it. Rename it if both are meant.",
        failing: "matrix keeptrusts {\n  hub api\n  rule adjacent_minor\n}",
        fixed: "matrix keeptrusts-2026 {\n  hub api\n  rule adjacent_minor\n}",
    },
    Entry {
        code: "ktplay::check::empty_file",
        warning: true,
        place: Place::Unverified,
        summary: "a .ktplay file with no playbook and no matrix",
        meaning: "The file checks nothing; usually it is empty by mistake or everything in it is \
                  commented out.",
        failing: "# nothing yet",
        fixed: "playbook \"p\" { … }",
    },
];
