// Package entra authenticates callers of the REST API with Microsoft Entra ID
// access tokens and answers the directory questions the issuance policy
// needs: does the account still stand behind the token, and does this user
// own that device.
//
// The package is deliberately self-contained:
//
//   - [Verifier] validates bearer tokens (RS256 only) against the tenant's
//     OIDC discovery documents and JWKS, which it caches and refreshes on an
//     unknown key ID at most once per interval. It accepts access tokens only:
//     an OpenID Connect ID token for the same audience (a `nonce`, no
//     `azp`/`appid`, no `scp`) is refused. Every rejection is an
//     [*AuthError] carrying the HTTP status and the RFC 6750 error code, so the
//     HTTP edge can render 401/403 with a correct WWW-Authenticate header
//     without knowing why a token failed. When the keys cannot be fetched at
//     all the error wraps [ErrUnavailable] (503 at the edge): an outage of the
//     identity provider must not look like a bad token, and must never let a
//     token through.
//   - [Directory] reads Microsoft Graph for what a token cannot say: the
//     account as it is now ([Directory.Account],
//     [Directory.ServicePrincipal], and an application's or a user's app
//     roles: [Directory.AppRoles], [Directory.UserAppRoles]; [RecheckCaller]
//     refuses a token issued before the account was disabled, deleted or had
//     its sessions revoked, or the role the request acts on was unassigned
//     from the user or application; a Graph token for another
//     tenant than the API's is never used), and whether a user is the
//     registered owner (Entra) or primary user (Intune) of a device — for an IntuneDeviceId:// name
//     only of the Intune managed device with that ID
//     ([Directory.VerdictManaged]) — and then whether an administrator has
//     disabled the Entra device (a disabled device is not owned), with small
//     bounded caches; [Directory.Answer] and [Directory.AnswerManaged] also
//     name that Entra device's object ID, which a deleted device's delta entry
//     carries ([Directory.DevicesDelta]). Graph failures are [ErrUnavailable],
//     never "allowed".
//   - [DevIssuer] is a local-only token issuer so `make run` can exercise the
//     real verification path with tokens the developer mints. It refuses to
//     serve anything but loopback addresses.
//
// The JWKS cache is written here on top of encoding/json rather than
// github.com/MicahParks/keyfunc/v3: keyfunc v3.3.5 has no refresh-on-unknown-kid
// at all, and jwkset v0.5.19's rate limiter makes each caller *wait* for the
// next token (up to a minute) and refresh on its own instead of failing fast
// and sharing one in-flight refresh. Only RSA signing keys are accepted.
package entra
