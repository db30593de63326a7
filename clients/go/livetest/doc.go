// Package livetest holds the Go client's end-to-end tests: they call every
// loomflow service of a running suite over real gRPC.
//
// tests/test_go_client.py starts the suite (`loomflow serve`, secure mode),
// mints tokens and runs `go test ./...` with these variables:
//
//	LOOMFLOW_TEST_ADDRESS         host:port of the suite (plaintext)
//	LOOMFLOW_TEST_SERVICE_TOKEN   a service token (acts for any tenant)
//	LOOMFLOW_TEST_OPERATOR_TOKEN  an operator token
//	LOOMFLOW_TEST_ALICE, LOOMFLOW_TEST_ALICE_TOKEN  an end user and their token
//	LOOMFLOW_TEST_BOB, LOOMFLOW_TEST_BOB_TOKEN      a second end user and theirs
//	LOOMFLOW_TEST_LIVE_REQUIRED   "1": fail, rather than skip, when the above are unset
//
// A service that still answers UNIMPLEMENTED is skipped with a "PENDING"
// message, so the suite grows with each service as it lands.
package livetest
