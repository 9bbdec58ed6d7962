// Package policy is the pure logic of ClusterSessionCleanupPolicies: which
// policy governs a store, which database server a store loads, what a
// schedule with H becomes, whether the policy's windows are open, and which
// waiting cleanup runs the gate may start. Nothing here talks to the API
// server; time comes in as an argument, so tests inject a clock.
package policy
