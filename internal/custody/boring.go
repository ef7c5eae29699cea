//go:build goexperiment.boringcrypto

package custody

// BoringCrypto signs RSA in BoringSSL, whose own checks this package does not vouch for: the caller verifies.
func init() { rsaSignChecks = false }
