// Package deploy holds what an operator deploys stevedore with: the
// Dockerfile, Prometheus alerting rules (prometheus/), the Grafana dashboard
// (grafana/) and the runbook (RUNBOOK.md). Its tests check them: the rules
// with promtool (check and unit tests), every dashboard query with
// Prometheus's own parser, every metric they name against the metrics the
// code registers, and a runbook section for every alert.
package deploy
