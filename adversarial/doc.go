// Package adversarial holds Custody's adversarial test suite. It has no
// code of its own; its tests run with the rest (go test ./...) and attack an
// in-process server the way a hostile tenant would:
//
//   - the authorization matrix: every route of the resource manager, the key
//     vault and batch data planes and the portal, enumerated from the route
//     tables the routers serve (httpapi.ARM.Routes, httpapi.VaultRoutes,
//     httpapi.BatchRoutes, portal.Portal.Routes), called by a principal with
//     no role, a Reader at the subscription, a Contributor on another
//     resource group, a Contributor on one resource, and the Owner as the
//     control. Each route needs a row in the test's own table that names the
//     action it must require, so a route added without a row fails;
//   - forged and mismatched tokens on every plane: bad signatures, alg none
//     and HS256, unknown key ids, another plane's audience, expired and
//     not-yet-valid tokens, foreign issuers and tenants;
//   - fuzz targets for every JSON body the HTTP handlers decode, and for the
//     token verifier, the JWK parser, OData $filter and ARM path parsing
//     (the last three live beside their code), seeded with known hostile
//     inputs. Plain go test runs the seeds; .ci/run fuzzes each target for
//     a bounded time.
//
// Every test server here logs to a buffer, and a test fails if the log
// shows a 5xx answer or a panic.
package adversarial
