#!/usr/bin/env bash
# The comparison in bench/check.sh's ratio: `ansible-playbook --syntax-check` of 100 playbooks
# that say what playbooks/keeptrusts-1.5.ktplay says (stages as plays, guards as uri/command
# tasks with until/retries, rollbacks as rescue blocks), in one invocation, best of 5.
# Installs ansible-core into a venv under $TMPDIR when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
ap=$(command -v ansible-playbook || true)
if [ -z "$ap" ]; then
  venv=${TMPDIR:-/tmp}/ktplay-ansible-venv
  [ -x "$venv/bin/ansible-playbook" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q ansible-core; }
  ap=$venv/bin/ansible-playbook
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
one() { cat <<YAML
# keeptrusts 1.4 -> 1.5, playbook $1
- name: api with migrations
  hosts: localhost
  gather_facts: false
  vars: {ns: keeptrusts, api_from: "1.4.2", api_to: "1.5.0", gateway_url: "https://gateway.staging.example.com"}
  tasks:
    - block:
        - name: a backup within 24h
          ansible.builtin.command: kubectl -n {{ ns }} get configmap backup-status -o jsonpath='{.data.last}'
          register: backup
          changed_when: false
        - ansible.builtin.assert: {that: ["backup.stdout | int > (ansible_date_time.epoch | int) - 86400"]}
        - name: set the api image
          ansible.builtin.command: kubectl -n {{ ns }} set image deployment/keeptrusts-api api=keeptrusts/api:{{ api_to }}
        - ansible.builtin.command: kubectl -n {{ ns }} rollout status deployment/keeptrusts-api --timeout=10m
        - name: ready
          ansible.builtin.uri: {url: "https://api.staging.example.com/readyz", status_code: 200}
          register: r
          until: r.status == 200
          retries: 24
          delay: 5
        - name: migrations logged
          ansible.builtin.shell: kubectl -n {{ ns }} logs deployment/keeptrusts-api | grep -E 'migration 0042_add_policy_index applied'
          register: logs
          until: logs.rc == 0
          retries: 60
          delay: 5
      rescue:
        - ansible.builtin.command: kubectl -n {{ ns }} rollout undo deployment/keeptrusts-api
        - ansible.builtin.fail: {msg: "api rolled back"}
- name: gateways by canary
  hosts: localhost
  gather_facts: false
  vars: {ns: keeptrusts, gw_to: "1.5.0", gateway_url: "https://gateway.staging.example.com", prom_url: "http://prometheus.monitoring.svc:9090"}
  tasks:
    - block:
        - name: canary deployment
          ansible.builtin.command: kubectl -n {{ ns }} apply -f gateway-canary.yaml
        - ansible.builtin.pause: {minutes: 5}
        - name: error rate
          ansible.builtin.uri:
            url: "{{ prom_url }}/api/v1/query?query=sum(rate(http_requests_total%7Bapp%3D%22gateway%22%2Ccode%3D~%225..%22%7D%5B1m%5D))"
            return_content: true
          register: q
          failed_when: (q.json.data.result[0].value[1] | float) >= 0.01
        - name: policy enforced
          ansible.builtin.uri:
            url: "{{ gateway_url }}/v1/chat/completions"
            method: POST
            headers: {Authorization: "Bearer {{ lookup('env', 'TEST_KEY') }}", X-Request-Id: ktplay-policy-check}
            body_format: json
            body: {model: gpt-4o, messages: [{role: user, content: test blocked content}]}
            status_code: 409
            return_content: true
          register: p
          failed_when: "'blocked' not in p.content"
        - ansible.builtin.command: kubectl -n {{ ns }} delete -f gateway-canary.yaml
        - ansible.builtin.command: kubectl -n {{ ns }} set image deployment/keeptrusts-gateway gateway=keeptrusts/gateway:{{ gw_to }}
        - ansible.builtin.command: kubectl -n {{ ns }} rollout status deployment/keeptrusts-gateway --timeout=10m
      rescue:
        - ansible.builtin.command: kubectl -n {{ ns }} delete -f gateway-canary.yaml --ignore-not-found
        - ansible.builtin.command: kubectl -n {{ ns }} rollout undo deployment/keeptrusts-gateway
        - ansible.builtin.command: kubectl -n {{ ns }} rollout undo deployment/keeptrusts-api
        - ansible.builtin.fail: {msg: "gateways rolled back"}
- name: console by blue-green
  hosts: localhost
  gather_facts: false
  vars: {ns: keeptrusts, console_to: "1.5.0"}
  tasks:
    - block:
        - ansible.builtin.command: kubectl -n {{ ns }} set image deployment/keeptrusts-console-green console=keeptrusts/console:{{ console_to }}
        - ansible.builtin.command: kubectl -n {{ ns }} rollout status deployment/keeptrusts-console-green --timeout=10m
        - ansible.builtin.uri: {url: "https://console-green.staging.example.com/healthz", status_code: 200}
        - ansible.builtin.command: >-
            kubectl -n {{ ns }} patch service keeptrusts-console -p '{"spec":{"selector":{"version":"green"}}}'
      rescue:
        - ansible.builtin.command: >-
            kubectl -n {{ ns }} patch service keeptrusts-console -p '{"spec":{"selector":{"version":"blue"}}}'
        - ansible.builtin.fail: {msg: "console switched back"}
- name: workers
  hosts: localhost
  gather_facts: false
  vars: {ns: keeptrusts, workers: [worker-export, worker-lifecycle, worker-config]}
  tasks:
    - ansible.builtin.command: kubectl -n {{ ns }} set image deployment/{{ item }} worker=keeptrusts/worker:1.5.0
      loop: "{{ workers }}"
    - ansible.builtin.command: kubectl -n {{ ns }} rollout status deployment/{{ item }} --timeout=10m
      loop: "{{ workers }}"
YAML
}
files=()
for i in $(seq 1 100); do one "$i" > "$work/p$i.yml"; files+=("$work/p$i.yml"); done
"$ap" --syntax-check "${files[@]}" >/dev/null
best=999999
for _ in 1 2 3 4 5; do
  s=$(date +%s%N)
  "$ap" --syntax-check "${files[@]}" >/dev/null 2>&1
  ms=$(( ($(date +%s%N) - s) / 1000000 ))
  (( ms < best )) && best=$ms
done
echo "ansible-playbook --syntax-check, 100 playbooks: best $best ms ($("$ap" --version 2>/dev/null | head -n 1))"
