#!/usr/bin/env bash
# Makes stevedore's NATS users for a namespace: one nkey per service
# (producer, worker, operator) and the NATS system account's password.
#   deploy/kubernetes/nats/users.sh stevedore
# creates, with kubectl:
#   Secret    stevedore-nats        the seeds (producer.nk, worker.nk, operator.nk), mounted by stevedore's pods
#   ConfigMap stevedore-nats-users  the public keys, read by the NATS pods (auth.conf)
#   Secret    nats-sys              the system account's password
# Seeds never leave the Secret; run it again to rotate every key (then
# restart NATS and stevedore's pods). Needs kubectl and Go (nkeys' nk tool,
# from the Go module proxy, at the version go.mod pins).
set -euo pipefail
ns="${1:?usage: $0 NAMESPACE}"
root=$(cd "$(dirname "$0")/../../.." && pwd)
version=$(cd "$root" && go list -m -f '{{.Version}}' github.com/nats-io/nkeys)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pub=()
for svc in producer worker operator; do
  go run "github.com/nats-io/nkeys/nk@$version" -gen user >"$tmp/$svc.nk"
  pub+=("--from-literal=$svc=$(go run "github.com/nats-io/nkeys/nk@$version" -inkey "$tmp/$svc.nk" -pubout)")
done
kubectl -n "$ns" create secret generic stevedore-nats --from-file="$tmp/producer.nk" --from-file="$tmp/worker.nk" \
  --from-file="$tmp/operator.nk" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" create configmap stevedore-nats-users "${pub[@]}" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" create secret generic nats-sys --from-literal=password="$(head -c 32 /dev/urandom | base64 | tr -d '/+=')" \
  --dry-run=client -o yaml | kubectl apply -f -
echo "NATS users for namespace $ns: Secret stevedore-nats, ConfigMap stevedore-nats-users, Secret nats-sys" >&2
