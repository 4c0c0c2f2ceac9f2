//! The entries of `ktplay explain` for the back half: the compatibility model, scripts, the
//! runner and I/O, and the hazards a cluster's objects show.

use super::{Entry, Place};

/// The compat, script, run, I/O and hazard codes.
pub(super) static BACK: &[Entry] = &[
    // ------------------------------------------------------------------ compat
    Entry {
        code: "ktplay::compat::incompatible",
        warning: false,
        place: Place::Stage,
        summary: "the upgrade (or a rollback) passes through a state the matrix forbids",
        meaning: "`check` runs the playbook over version sets and checks every state on every \
                  forward and rollback path against the matrix. The message names the statement \
                  that creates the state, the state, the forbidding row and the path.",
        failing: "rolling gateway    # gateway 1.5.0 beside api 1.4.2\nrolling api",
        fixed: "rolling api\nrolling gateway",
    },
    Entry {
        code: "ktplay::compat::no_row",
        warning: false,
        place: Place::Stage,
        summary: "a version the matrix has no row for",
        meaning: "The matrix says nothing about the hub at that version, and silence is not \
                  consent: the state is not known to be compatible.",
        failing: "rolling api to 1.6.2    # the matrix has no api 1.6.x row",
        fixed: "rolling api to 1.5.0",
    },
    Entry {
        code: "ktplay::compat::forward_only_rollback",
        warning: false,
        place: Place::Unverified,
        summary: "a rollback path takes a component with forward-only migrations back",
        meaning: "`migrations forward_only` means the old version cannot read the migrated data, \
                  so any path that rolls it back (a later stage failing) is an error.",
        failing: "component api { migrations forward_only … }\nstage api { rolling api }\nstage gateways { rolling gateway }",
        fixed: "component api { migrations forward_only … }\nstage gateways { rolling gateway }\nstage api { rolling api }   # last: nothing after it can fail",
    },
    Entry {
        code: "ktplay::compat::schema_rollback",
        warning: false,
        place: Place::Unverified,
        summary: "a rollback path runs the previous version against a schema its migrations broke",
        meaning: "The component's new migrations (found in its `migrations … { files … }`) drop, \
                  rename or retype what `from` uses, so rolling it back runs `from` against a \
                  schema it cannot use: to the model the component is forward-only, and every \
                  rollback path that takes it back is an error, as for `migrations forward_only`.",
        failing: "component api { migrations backward_compatible { files \"db\" } … }   # db/V1_5_0__drop.sql drops a column\nstage api { rolling api }\nstage gateways { rolling gateway }",
        fixed: "# expand in 1.5.0 (stop using the column), contract in 1.6.0 (drop it)\ncomponent api { migrations backward_compatible { files \"db\" } … }",
    },
    Entry {
        code: "ktplay::migrations::breaking",
        warning: false,
        place: Place::Unverified,
        summary: "a new migration breaks the previous version of a component that claims `backward_compatible`",
        meaning: "A migration of a release after `from` drops or renames a column or table, \
                  changes a column's type, sets NOT NULL, adds a NOT NULL column without a \
                  default or adds an enum value: `from`, still running during the rollout and \
                  after a rollback, fails against that schema. Found by squawk when it is on \
                  PATH, else by ktplay's built-in rules; `check` says which ran.",
        failing: "-- db/V1_5_0__rename.sql\nALTER TABLE users RENAME COLUMN name TO full_name;",
        fixed: "-- db/V1_5_0__expand.sql (1.5.0 writes both columns)\nALTER TABLE users ADD COLUMN full_name text;\n-- db/V1_6_0__contract.sql\nALTER TABLE users DROP COLUMN name;",
    },
    Entry {
        code: "ktplay::migrations::lock",
        warning: true,
        place: Place::Unverified,
        summary: "a new migration takes a long lock (an index built without CONCURRENTLY)",
        meaning: "`CREATE INDEX` without `CONCURRENTLY` blocks writes to the table until the \
                  index is built: a zero-downtime release stalls its writers.",
        failing: "CREATE INDEX users_email ON users (email);",
        fixed: "CREATE INDEX CONCURRENTLY users_email ON users (email);",
    },
    Entry {
        code: "ktplay::migrations::sql",
        warning: false,
        place: Place::Unverified,
        summary: "a new migration cannot be read as PostgreSQL",
        meaning: "The linter could not parse a statement, so neither it nor the statements after \
                  it in that file were checked: an unchecked migration is not a safe one.",
        failing: "ALTER TABLE users ADD COLUMN;",
        fixed: "ALTER TABLE users ADD COLUMN nickname text;",
    },
    Entry {
        code: "ktplay::migrations::file",
        warning: false,
        place: Place::Unverified,
        summary: "a migration path that cannot be used",
        meaning: "Migration and queries paths are relative to the playbook and must lie inside \
                  its tree (`..` out of it, absolute paths and symlinks out are refused unread), \
                  be regular UTF-8 files of at most 16 MiB, and each file's release must be \
                  known (`V1_5_0__what.sql`, a folder `1.5.0/`, or a `release` list).",
        failing: "migrations backward_compatible { files \"/etc\" }",
        fixed: "migrations backward_compatible { files \"db/migrations\" }",
    },
    Entry {
        code: "ktplay::database::old_query",
        warning: false,
        place: Place::Unverified,
        summary: "a query of the previous version fails against the new schema (`check --database`)",
        meaning: "On a scratch database with every migration up to `to` applied, a statement of \
                  the component's `queries` file (what `from` issues) failed inside a \
                  transaction that was rolled back: `from` cannot run beside or after this \
                  release. The diagnostic names the query and the migrations of this upgrade.",
        failing: "-- queries: SELECT email FROM users;\n-- db/V1_5_0__drop.sql: ALTER TABLE users DROP COLUMN email;",
        fixed: "-- 1.5.0: stop reading email; drop it in 1.6.0",
    },
    Entry {
        code: "ktplay::database::unavailable",
        warning: false,
        place: Place::Unverified,
        summary: "the database check (`check --database`) could not run",
        meaning: "The server could not be reached, the scratch database could not be created, or \
                  a migration failed to apply: the claim was not checked, which is never a pass.",
        failing: "ktplay check --database postgres://nobody@127.0.0.1:1/x playbook.ktplay",
        fixed: "ktplay check --database \"$DATABASE_URL\" playbook.ktplay",
    },
    Entry {
        code: "ktplay::compat::eol",
        warning: true,
        place: Place::Unverified,
        summary: "a state runs a version its matrix row marks `eol`",
        meaning: "The state is allowed but unsupported; upgrade through it rather than stay.",
        failing: "api 1.3.x eol { … }\ncomponent api { from 1.3.4  to 1.3.5 … }",
        fixed: "component api { from 1.3.4  to 1.4.2 … }",
    },
    Entry {
        code: "ktplay::compat::order",
        warning: true,
        place: Place::Unverified,
        summary: "stages upgrade components against the matrix's recommended `order`",
        meaning: "Every state is allowed, but the matrix recommends another order (`order api \
                  gateway console workers`).",
        failing: "stage workers { rolling workers }\nstage api { rolling api }",
        fixed: "stage api { rolling api }\nstage workers { rolling workers }",
    },
    Entry {
        code: "ktplay::compat::unmodelled_undo",
        warning: true,
        place: Place::Stage,
        summary: "`undo C to revision N`: only the cluster knows that revision's version",
        meaning: "`check` cannot know the version of an arbitrary revision, so that state is not \
                  checked here; the live check before the action guards it at run time.",
        failing: "rolling api\nrollback {\n  undo api to revision 3\n}",
        fixed: "rolling api\nrollback {\n  undo api\n}",
    },
    // ------------------------------------------------------------------ script
    Entry {
        code: "ktplay::script::syntax",
        warning: false,
        place: Place::Stage,
        summary: "a Rhai script does not compile",
        meaning: "Inline scripts and hook files are compiled by `check`; the label points into the \
                  script's own text.",
        failing: "guard rhai \"\"\"versions(\"api\").len( == 1\"\"\"",
        fixed: "guard rhai \"\"\"versions(\"api\").len() == 1\"\"\"",
    },
    Entry {
        code: "ktplay::script::unknown_function",
        warning: false,
        place: Place::Stage,
        summary: "a script calls a function neither the API nor Rhai provides",
        meaning: "The script API (`http_get`, `pods`, `versions`, `kube_get`, `secret`, …) and \
                  Rhai's standard package are known to `check`; anything else would fail at run \
                  time.",
        failing: "guard rhai \"\"\"http_gett(vars.api_url).status == 200\"\"\"",
        fixed: "guard rhai \"\"\"http_get(vars.api_url).status == 200\"\"\"",
    },
    // ------------------------------------------------------------------ io, run, internal
    Entry {
        code: "ktplay::io::unreadable",
        warning: false,
        place: Place::Unverified,
        summary: "a named file cannot be read",
        meaning: "A path on the command line that does not exist or cannot be read; `check` exits \
                  2 (usage or I/O error).",
        failing: "ktplay check playbooks/keeptrust-1.5.ktplay",
        fixed: "ktplay check playbooks/keeptrusts-1.5.ktplay",
    },
    Entry {
        code: "ktplay::io::empty_dir",
        warning: false,
        place: Place::Unverified,
        summary: "a named folder holds no .ktplay files",
        meaning: "Folders are searched for `*.ktplay` files; one without any is named as an error \
                  so a wrong path in CI cannot pass by checking nothing.",
        failing: "ktplay check docs/",
        fixed: "ktplay check playbooks/",
    },
    Entry {
        code: "ktplay::check::bad_promql",
        warning: false,
        place: Place::Stage,
        summary: "a metric guard's query is not valid PromQL, or does not give one value",
        meaning: "`guard metric` queries are parsed with `promql-parser` after `${…}` is replaced \
                  by a stand-in of its kind; the error is labelled inside the string. The query \
                  must be an instant vector or a scalar: a range vector or a string cannot be \
                  compared with a threshold.",
        failing: "guard metric \"http://prometheus:9090\" query \"rate(http_requests_total[1m]\" below 1",
        fixed: "guard metric \"http://prometheus:9090\" query \"sum(rate(http_requests_total[1m]))\" below 1",
    },
    Entry {
        code: "ktplay::check::no_baseline",
        warning: false,
        place: Place::Stage,
        summary: "`baseline` with a query that does not name the new version",
        meaning: "The baseline is the same query with every `${C.to}` read as `${C.from}`; a \
                  query without `${C.to}` would be compared with itself.",
        failing: "guard metric \"http://prometheus:9090\" query \"sum(rate(http_requests_total[1m]))\" below baseline * 1.2",
        fixed: "guard metric \"http://prometheus:9090\" query \"sum(rate(http_requests_total{version=\\\"${api.to}\\\"}[1m]))\" below baseline * 1.2",
    },
    Entry {
        code: "ktplay::check::test_playbook",
        warning: false,
        place: Place::File,
        summary: "a `test` names a playbook file or playbook that does not exist",
        meaning: "A test's `playbook \"FILE\"` is relative to the test's own file; `name \"P\"` \
                  picks one playbook when the file holds several. A test without a playbook, or \
                  with one that cannot be found, could not test anything.",
        failing: "test \"smoke\" {\n  playbook \"playbok.ktplay\"\n  env staging\n  expect succeeded\n}",
        fixed: "test \"smoke\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  expect succeeded\n}",
    },
    Entry {
        code: "ktplay::check::fleet_playbook",
        warning: false,
        place: Place::File,
        summary: "a `fleet` names no playbook, or one that does not exist",
        meaning: "A fleet runs one playbook in every cluster: `playbook \"FILE\"` is relative to the fleet's own file, `name \"P\"` picks one playbook when the file holds several.",
        failing: "fleet \"f\" {\n  playbook \"playbok.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n}",
    },
    Entry {
        code: "ktplay::check::unknown_cluster",
        warning: false,
        place: Place::File,
        summary: "a wave or a `shared` names a cluster the fleet does not declare",
        meaning: "Waves and shared components name clusters declared with `cluster NAME { … }` in the same fleet.",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters b }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n}",
    },
    Entry {
        code: "ktplay::check::unknown_context",
        warning: false,
        place: Place::File,
        summary: "a fleet's cluster has no kube context",
        meaning: "Each cluster is a kube context: its own `context \"…\"`, or its env's. Without one the fleet could not tell which cluster to upgrade.",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { }\n  wave one { clusters a }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n}",
    },
    Entry {
        code: "ktplay::check::empty_wave",
        warning: false,
        place: Place::File,
        summary: "a wave upgrades no cluster",
        meaning: "A wave lists the clusters it upgrades with `clusters NAME…`; one without is a mistake (a misplaced name, a forgotten line).",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n  wave two { }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one { clusters a }\n}",
    },
    Entry {
        code: "ktplay::check::fleet_twice",
        warning: false,
        place: Place::File,
        summary: "a cluster is in two waves",
        meaning: "Each cluster is upgraded once, in one wave; naming it twice would upgrade it, or judge it, twice.",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  cluster b { context \"b\" }\n  wave one { clusters a }\n  wave two { clusters a }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  cluster b { context \"b\" }\n  wave one { clusters a }\n  wave two { clusters b }\n}",
    },
    Entry {
        code: "ktplay::check::idle_cluster",
        warning: true,
        place: Place::File,
        summary: "a fleet's cluster is in no wave",
        meaning: "Only the clusters of a wave are upgraded; a declared cluster in no wave is usually forgotten.",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  cluster b { context \"b\" }\n  wave one { clusters a }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  cluster b { context \"b\" }\n  wave one { clusters a b }\n}",
    },
    Entry {
        code: "ktplay::check::soak_unwatched",
        warning: true,
        place: Place::File,
        summary: "a soak without guards only waits",
        meaning: "A soak is watched, not slept: its guards keep running against the finished clusters, and a failure there fails the wave. A soak without guards would let a broken wave through after a pause.",
        failing: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one {\n    clusters a\n    soak 10m\n  }\n}",
        fixed: "fleet \"f\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  cluster a { context \"a\" }\n  wave one {\n    clusters a\n    soak 10m { guard http GET \"${api_url}/readyz\" expect 200 }\n  }\n}",
    },
    Entry {
        code: "ktplay::compat::fleet_incompatible",
        warning: false,
        place: Place::Unverified,
        summary: "a fleet's waves put a cluster beside a shared component in a state the matrix forbids",
        meaning: "Where clusters share a component (`shared api in core`), `check` holds every state across clusters, in every wave and every rollback the failure policy takes, to the playbook's matrix. The message names the wave, the clusters and the versions.",
        failing: "shared api in core\nwave regions { clusters eu-west }   # gateway 1.5.0 beside the shared api 1.4.2\nwave core { clusters core }",
        fixed: "shared api in core\nwave core { clusters core }\nwave regions { clusters eu-west }",
    },
    Entry {
        code: "ktplay::check::test_fault",
        warning: false,
        place: Place::File,
        summary: "a test's fault is not a fault, or names what the playbook does not have",
        meaning: "Faults are written as for `ktplay rehearse --fault`, and checked against the \
                  playbook: a misspelled component or a version nothing runs would make a \
                  failure test pass for the wrong reason (the fault never fires).",
        failing: "test \"api fails\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  fault never-ready:apx@1.5.0\n  expect rolled_back\n}",
        fixed: "test \"api fails\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  fault never-ready:api@1.5.0\n  expect rolled_back\n}",
    },
    Entry {
        code: "ktplay::check::test_expect",
        warning: false,
        place: Place::File,
        summary: "an `expect` names an outcome, stage, statement, component or version that does not exist",
        meaning: "Outcomes are succeeded, rolled_back, rollback_incomplete, refused and halted; \
                  `failed stage S statement N` counts N from 1 within the stage; `rollback order` \
                  and `final` name components; `final` versions are exact, and one the component \
                  runs in the playbook (its `from`, its `to` or a statement's `to`): any other \
                  could never hold.",
        failing: "test \"smoke\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  expect sucess\n}",
        fixed: "test \"smoke\" {\n  playbook \"playbook.ktplay\"\n  env staging\n  expect succeeded\n}",
    },
    Entry {
        code: "ktplay::test::failed",
        warning: false,
        place: Place::Unverified,
        summary: "`ktplay test`: an expectation did not hold",
        meaning: "The test ran on its simulator and ended otherwise than the `expect` line says; \
                  the message says what happened instead. Fix the playbook, or the expectation \
                  if the playbook is right.",
        failing: "expect rollback order backend frontend   # it went frontend → backend",
        fixed: "expect rollback order frontend backend",
    },
    Entry {
        code: "ktplay::test::error",
        warning: false,
        place: Place::Unverified,
        summary: "`ktplay test`: a test could not run at all",
        meaning: "The simulator or the runtime of the test could not start (a port, a thread). \
                  Nothing about the playbook was learned; rerun it.",
        failing: "the test could not run: cannot start the simulator: …",
        fixed: "# rerun once the machine has a free loopback port",
    },
    Entry {
        code: "ktplay::run::failed",
        warning: false,
        place: Place::Unverified,
        summary: "a statement failed while running (shown at its playbook line)",
        meaning: "A runtime failure of `run` or `rehearse`: a rollout that timed out, a guard \
                  that did not pass, a hook that returned false. The run rolls back as the \
                  playbook says.",
        failing: "guard http GET \"${api_url}/health\" expect 200 within 30s   # answered 503",
        fixed: "# fix the service, or give it the time it needs: within 2m",
    },
    // ------------------------------------------------------------------ hazards (run, plan)
    Entry {
        code: "ktplay::hazard::no_readiness_probe",
        warning: true,
        place: Place::Unverified,
        summary: "a Service's pods have no readinessProbe: new pods get requests while still loading",
        meaning: "The statement starts new pods (rolling, canary, restart, undo, scale up, a blue-green deploy) of a Deployment a Service selects, and the component's container has neither a readinessProbe nor a startupProbe. Kubernetes then counts a pod Ready as soon as its process starts, and the Service sends it requests while it is still loading (on the real data path: 125 to 354 failed requests in one rolling update of three pods that listen 2 s after start). Found by `run`'s preflight and `plan --cluster`.",
        failing: "containers:
- name: gateway
  image: keeptrusts/gateway:1.4.1",
        fixed: "containers:
- name: gateway
  image: keeptrusts/gateway:1.4.1
  readinessProbe:
    httpGet: {path: /readyz, port: http}
    periodSeconds: 1",
    },
    Entry {
        code: "ktplay::hazard::no_prestop",
        warning: true,
        place: Place::Unverified,
        summary: "a Service's pods have no preStop hook: requests sent while the endpoint leaves the proxies fail",
        meaning: "The statement deletes pods (a rolling update, a canary's promotion or removal, restart, undo, scale down) of a Deployment a Service selects, and the container has no preStop hook. The kubelet sends SIGTERM at once, while the pod's endpoint is still in the EndpointSlice and in every proxy's rules for up to the endpoint lag (assumed 5 s: the EndpointSlice update, kube-proxy's sync, ingress controllers and load balancers; `--endpoint-lag`/`KTPLAY_ENDPOINT_LAG` sets it). Requests routed there in that time are refused or reset: on the real data path 7 to 156 failed requests per rolling update of three pods.",
        failing: "containers:
- name: gateway
  image: keeptrusts/gateway:1.4.1",
        fixed: "containers:
- name: gateway
  image: keeptrusts/gateway:1.4.1
  lifecycle:
    preStop:
      sleep: {seconds: 10}     # or exec: {command: [\"sleep\", \"10\"]}",
    },
    Entry {
        code: "ktplay::hazard::short_prestop",
        warning: true,
        place: Place::Unverified,
        summary: "the preStop sleep is shorter than the time an endpoint takes to leave every proxy",
        meaning: "The preStop hook is a sleep (`sleep: {seconds: N}`, an exec of `sleep N`, or a shell script whose `sleep`s add up to N) shorter than the assumed endpoint lag (5 s by default; `--endpoint-lag`). The pod stops serving before every proxy has stopped sending to it. Hooks that are not sleeps (httpGet, other commands) take the app's time, which ktplay cannot know: they are trusted.",
        failing: "lifecycle:
  preStop:
    exec: {command: [\"sleep\", \"2\"]}",
        fixed: "lifecycle:
  preStop:
    exec: {command: [\"sleep\", \"10\"]}",
    },
    Entry {
        code: "ktplay::hazard::grace_too_short",
        warning: true,
        place: Place::Unverified,
        summary: "terminationGracePeriodSeconds is shorter than the preStop hook plus the app's drain",
        meaning: "The grace period covers the preStop hook and the app's shutdown; when it ends the kubelet kills the process. With a grace shorter than the preStop sleep plus the app's drain (assumed 5 s; `--app-drain`), in-flight requests are cut, and with a grace shorter than the endpoint lag the process is gone while requests still arrive (on the real data path: grace 1 s with preStop 10 s lost 19 requests; grace 5 s lost none, since endpoints left in about 2 s there).",
        failing: "terminationGracePeriodSeconds: 5
containers:
- name: gateway
  lifecycle: {preStop: {sleep: {seconds: 10}}}",
        fixed: "terminationGracePeriodSeconds: 30
containers:
- name: gateway
  lifecycle: {preStop: {sleep: {seconds: 10}}}",
    },
    Entry {
        code: "ktplay::hazard::takes_every_replica",
        warning: false,
        place: Place::Unverified,
        summary: "the rollout may take every pod down at once (maxUnavailable ≥ replicas, or Recreate)",
        meaning: "maxUnavailable (the statement's `max_unavailable`, else the Deployment's) resolved as the deployment controller resolves it (percent of replicas rounded down; when maxSurge and maxUnavailable both come to 0, 1) is at least the number of replicas, or the strategy is Recreate: for a moment no pod serves (e.g. `maxUnavailable: 1` with 1 replica).",
        failing: "rolling gateway max_unavailable 1 max_surge 1     # keeptrusts-gateway runs 1 replica",
        fixed: "rolling gateway max_unavailable 0 max_surge 1     # a new pod is ready before the old one goes",
    },
    Entry {
        code: "ktplay::hazard::no_progress",
        warning: false,
        place: Place::Unverified,
        summary: "maxUnavailable 0 with maxSurge 0: the rollout can neither remove nor add a pod",
        meaning: "The statement's `max_unavailable`/`max_surge` over the Deployment's own values come to 0 and 0 (e.g. `max_unavailable 0` on a Deployment with `maxSurge: 0`): the API refuses such a Deployment, so the statement fails at its first write. `check` already refuses both 0 in one statement; this is the case only the live object shows.",
        failing: "rolling gateway max_unavailable 0     # keeptrusts-gateway: maxSurge 0",
        fixed: "rolling gateway max_unavailable 0 max_surge 1",
    },
    Entry {
        code: "ktplay::hazard::pdb_violated",
        warning: true,
        place: Place::Unverified,
        summary: "the rollout goes below what a PodDisruptionBudget of the pods promises",
        meaning: "A PodDisruptionBudget selects the Deployment's pods with a minAvailable (percent rounded up) or maxUnavailable the rollout's maxUnavailable does not keep: a rolling update does not go through the eviction API, so the budget does not stop it, and the service runs below what its owners asked for (and any drain meanwhile is blocked).",
        failing: "# PDB minAvailable: 3, Deployment 3 replicas
rolling gateway max_unavailable 1 max_surge 1",
        fixed: "# PDB minAvailable: 3, Deployment 3 replicas
rolling gateway max_unavailable 0 max_surge 1",
    },
    Entry {
        code: "ktplay::hazard::no_pdb",
        warning: true,
        place: Place::Unverified,
        summary: "no PodDisruptionBudget covers a served Deployment of 2 or more replicas",
        meaning: "While a rollout holds a Deployment at reduced capacity, a node drain or the cluster autoscaler may evict the remaining pods; a PodDisruptionBudget is what stops them. ktplay asks for one when a Service selects the Deployment and it runs 2 or more replicas (a budget over one pod blocks every drain, so one replica is not asked). Accept it with `--allow-hazard no_pdb` where drains cannot happen during the run.",
        failing: "# keeptrusts-gateway: 3 replicas behind a Service, no PDB",
        fixed: "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keeptrusts-gateway}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: keeptrusts-gateway}}",
    },
    Entry {
        code: "ktplay::hazard::progress_deadline",
        warning: true,
        place: Place::Unverified,
        summary: "progressDeadlineSeconds is longer than the statement's timeout",
        meaning: "ktplay stops waiting for the rollout at the statement's timeout (10m unless `timeout D`) and rolls back; a Deployment whose progressDeadlineSeconds is longer has not yet marked the rollout failed (ProgressDeadlineExceeded with the ReplicaSet's reason), so the cause is not recorded where people look.",
        failing: "rolling api timeout 2m      # progressDeadlineSeconds: 600",
        fixed: "rolling api timeout 10m     # or progressDeadlineSeconds: 120",
    },
    Entry {
        code: "ktplay::hazard::idle_at_zero",
        warning: false,
        place: Place::Unverified,
        summary: "the idle colour of a blue-green component has 0 replicas",
        meaning: "`blue_green` deploys the new version to the idle colour's Deployment and switches the Service to it. At 0 replicas no pod starts, the smoke tests meet nothing, and the switch sends every request to a Service without endpoints.",
        failing: "# keeptrusts-console-green: replicas 0
blue_green console { guard http GET \"${console_url}/api/health\" expect 200 }",
        fixed: "# kubectl scale deployment keeptrusts-console-green --replicas=3 first
blue_green console { guard http GET \"${console_url}/api/health\" expect 200 }",
    },
    Entry {
        code: "ktplay::hazard::canary_not_selected",
        warning: false,
        place: Place::Unverified,
        summary: "a Service of the component would not select the canary's pods",
        meaning: "A canary's pods carry the Deployment's `spec.selector.matchLabels` plus `track: canary`, and the canary Service ktplay creates for a `traffic` router selects the stable Service's selector plus `track: canary`. A Service that selects a label the matchLabels lack (or another `track`) matches no canary pod: with a router, its canary share of requests fails (an error); without one, the canary gets no requests and its guards judge nothing (a warning).",
        failing: "# Service selector {app: gw, tier: edge}; Deployment matchLabels {app: gw}
canary gateway weight 10% for 5m { … }",
        fixed: "# Service selector {app: gw}; Deployment matchLabels {app: gw}
canary gateway weight 10% for 5m { … }",
    },
    Entry {
        code: "ktplay::hazard::unreadable",
        warning: true,
        place: Place::Unverified,
        summary: "an object the hazard rules need could not be read",
        meaning: "The preflight could not list Services or PodDisruptionBudgets, or read a Deployment or the blue-green Service, so the rules that need them were not checked. It is reported instead of skipped; under `--hazards refuse` it refuses the run.",
        failing: "# the run's user may not list poddisruptionbudgets.policy",
        fixed: "# grant list on services and poddisruptionbudgets.policy in the namespace",
    },
    Entry {
        code: "ktplay::internal::panic",
        warning: false,
        place: Place::Unverified,
        summary: "a bug in ktplay met while checking a file",
        meaning: "A stage of ktplay panicked. It is reported as an error on that file so an \
                  internal failure never reads as a clean check. Please report it with the file.",
        failing: "# any file that makes ktplay panic",
        fixed: "# none on your side: report the bug",
    },
];
