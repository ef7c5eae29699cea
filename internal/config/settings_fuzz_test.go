package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/keyvault"
	"github.com/azscep/azscep/internal/policy"
)

// FuzzLoadSettings loads a local configuration whose endpoint, profile, secret and rate settings are arbitrary.
// Load refuses only with *Error; a refusal of an optional feature disables that feature alone. Whatever is left
// enabled respects the documented limits: a profile passes policy's own Validate, an endpoint has a known
// challenge and cacert, names a defined, enabled profile, its replay window is 1m–31d, its renewal settings are 0
// or at least 1h, it renews only from enabled endpoints, a static endpoint has a secret of at least 8 characters
// that is never an unresolved platform reference; the rate is 1–1000000 per 1s–24h.
func FuzzLoadSettings(f *testing.F) {
	f.Add("challenge=static;profile=net;cacert=single;certrep_chain=true;renewal=14d",
		"validity=90d;ku=digitalSignature,keyEncipherment;eku=clientAuth,serverAuth;dns=*.corp.example.com;ip=10.0.0.0/8",
		"router-secret-1", "120/1m")
	f.Add("replay=1h;renew_from=Static;renewal_max=730d", "", "router-secret-1", "10/1s")
	f.Add("challenge=intune;profile=intune", "validity=1d;eku=serverAuth;curves=P-256;minrsa=3072", "x", "500/30s")
	f.Add("profile=api", "validity=365d;upn=*@contoso.com;email=*@contoso.com;identity_uris=sid", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s)", "0/1m")
	f.Add("profile=net;profile=net", "ku=keyCertSign", " \"@microsoft.appconfiguration (Key=x)\" ", "1/1d")
	f.Add("renewal=0;replay=32d", "validity=106751d;san=dns", "@Microsoft.KeyVault(VaultName=kv;SecretName=s)", "1000001/25h")
	f.Fuzz(func(t *testing.T, endpoint, profile, secret, rate string) {
		for _, v := range []string{endpoint, profile, secret, rate} {
			if strings.ContainsAny(v, "\x00\n") {
				return
			}
		}
		c, err := Load(localEnv("AZSCEP_SCEP_ENDPOINTS=routers,static", "AZSCEP_SCEP_ROUTERS="+endpoint,
			"AZSCEP_SCEP_ROUTERS_SECRET="+secret, "AZSCEP_PROFILE_NET="+profile, "AZSCEP_SCEP_RATE_PER_CLIENT="+rate))
		if err != nil {
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Fatalf("Load error %v (%T) is not *Error", err, err)
			}
			return
		}
		if r := c.SCEPRatePerClient; r.Count < 1 || r.Count > 1_000_000 || r.Per < time.Second || r.Per > 24*time.Hour {
			t.Fatalf("rate %q read as %+v", rate, r)
		}
		for name, p := range c.Profiles {
			if c.Fault(ProfileFeature(name)) != nil {
				continue
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("enabled profile %s from %q: %v", name, profile, err)
			}
		}
		if net := c.Profiles["net"]; net != nil && c.Fault(ProfileFeature("net")) == nil {
			if again, err := policy.ParseProfile("net", profile); err != nil || again.MaxValidity != net.MaxValidity ||
				again.KeyUsage != net.KeyUsage || !slices.Equal(again.ExtKeyUsage, net.ExtKeyUsage) {
				t.Fatalf("profile %q loads as %+v but parses as %+v, %v", profile, net, again, err)
			}
		}
		enabled := map[string]bool{}
		for _, e := range c.Endpoints {
			enabled[e.Name] = true
		}
		for _, e := range c.Endpoints {
			if c.Fault(EndpointFeature(e.Name)) != nil {
				t.Fatalf("endpoint %s listed while disabled by %v", e.Name, c.Fault(EndpointFeature(e.Name)))
			}
			if e.Challenge != "static" && e.Challenge != "intune" || e.CACert != "chain" && e.CACert != "single" {
				t.Fatalf("endpoint %s from %q: challenge %q cacert %q", e.Name, endpoint, e.Challenge, e.CACert)
			}
			if c.Profiles[e.Profile] == nil || c.Fault(ProfileFeature(e.Profile)) != nil {
				t.Fatalf("endpoint %s from %q uses profile %q, which is not enabled", e.Name, endpoint, e.Profile)
			}
			if e.ReplayWindow < time.Minute || e.ReplayWindow > 31*24*time.Hour {
				t.Fatalf("endpoint %s from %q: replay %s", e.Name, endpoint, e.ReplayWindow)
			}
			if e.RenewalWindow != 0 && e.RenewalWindow < time.Hour || e.RenewalMax != 0 && e.RenewalMax < time.Hour ||
				e.RenewalWindow < 0 || e.RenewalMax < 0 {
				t.Fatalf("endpoint %s from %q: renewal %s, renewal_max %s", e.Name, endpoint, e.RenewalWindow, e.RenewalMax)
			}
			for _, from := range e.RenewFrom {
				if !enabled[from] {
					t.Fatalf("endpoint %s from %q renews from %q, not an enabled endpoint", e.Name, endpoint, from)
				}
			}
			if e.Challenge == "static" && (len(e.Secret) < 8 || keyvault.IsPlatformReference(e.Secret)) {
				t.Fatalf("endpoint %s serves with secret %q", e.Name, e.Secret)
			}
			if e.Name == "routers" && e.Challenge == "static" && e.Secret != secret {
				t.Fatalf("routers secret %q read as %q", secret, e.Secret)
			}
		}
	})
}
