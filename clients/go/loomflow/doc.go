// Package loomflow is a thin Go client for the loomflow services: Memory,
// Budget, Policy, Audit and Agent.
//
// The wire types and stubs are generated from proto/loomflow/v1 into
// [github.com/loomflow/loomflow/clients/go/gen/loomflow/v1]; this package adds
// only what every caller would otherwise write by hand:
//
//   - [Dial] opens one connection carrying all five service stubs, with a
//     bearer token attached to every call ([WithToken], [WithTokenSource]) and
//     an explicit transport choice ([WithTLS], [WithInsecure]).
//   - [UserScope] and [AnonymousScope] build the tenant scope every request
//     carries. [UserScope] checks the id against the same protovalidate rules
//     the server enforces, so it can never express the reserved anonymous
//     sentinel: the anonymous partition is reachable only as [AnonymousScope].
//   - Typed error helpers ([IsNotFound], [IsInvalidArgument],
//     [IsResourceExhausted], ...) and the rich details the server attaches:
//     [FieldViolations] from google.rpc.BadRequest and [ExceededLimit] from
//     google.rpc.ErrorInfo.
//   - [WithValidation] checks every request locally before it is sent and
//     fails exactly as the server would (INVALID_ARGUMENT with BadRequest
//     field violations), saving a round trip for malformed input.
//
// Which credential to present: end users call the Agent service with a token
// whose subject equals scope.user_id; Memory, Budget, Policy and Audit accept
// service tokens (which act for any tenant they name) and operator tokens
// (required for cross-tenant reads and for policy and limit changes). A record
// of another tenant answers NOT_FOUND, never PERMISSION_DENIED, so its
// existence does not leak.
package loomflow
