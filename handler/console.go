package main

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azscep/azscep/internal/admin"
	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/console"
	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/policy"
)

// consoleConfig says how the console signs in: with the development issuer when it runs (local mode), with Entra
// when the API is configured (the API app registration is also the SPA: it requests its own access_as_user
// scope), otherwise not at all.
func consoleConfig(cfg *config.Config) console.Config {
	switch {
	case cfg.DevIssuer && cfg.Mode == config.ModeLocal:
		return console.Config{Mode: console.ModeDev, ClientID: entra.DevClientAppID,
			Scope: "api://" + entra.DevClientID + "/access_as_user", AuthorizeURL: "/api/dev/authorize", TokenURL: "/api/dev/token"}
	case cfg.API.Enabled && cfg.API.TenantID != "":
		var clientID, appIDURI string
		for _, a := range cfg.API.Audiences {
			if entra.IsGUID(a) && clientID == "" {
				clientID = a
			} else if strings.Contains(a, "://") && appIDURI == "" {
				appIDURI = a
			}
		}
		if appIDURI == "" && clientID != "" {
			appIDURI = "api://" + clientID
		}
		if clientID == "" {
			return console.Config{Mode: console.ModeDisabled}
		}
		return console.Config{Mode: console.ModeEntra, ClientID: clientID, Scope: strings.TrimRight(appIDURI, "/") + "/access_as_user",
			Authority: strings.TrimRight(cfg.API.AuthorityHost, "/") + "/" + cfg.API.TenantID}
	}
	return console.Config{Mode: console.ModeDisabled}
}

// consoleHandler serves /api/console/; a configuration it cannot serve answers 500 and says why in the log.
func consoleHandler(d *deps) http.Handler {
	h, err := console.New(consoleConfig(d.cfg))
	if err != nil {
		if d.log != nil {
			d.log.Error("certificate console disabled", "err", err)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteProblem(w, r, &httpx.Problem{Status: http.StatusInternalServerError, Code: "console_misconfigured",
				Detail: "the certificate console cannot start with these settings; see the log"})
		})
	}
	return h
}

// overview is the CA overview of GET /api/certificates/overview: certificates, key custody, the CRL being served,
// the SCEP endpoints and the profiles. The admin handler adds the stale pending records.
func (d *deps) overview(ctx context.Context) (*admin.Overview, error) {
	cfg := d.cfg
	ov := &admin.Overview{Mode: string(cfg.Mode), APIProfile: cfg.API.Profile, APIProfiles: append([]string{cfg.API.Profile}, cfg.API.Profiles...), URLs: map[string]string{
		"ca": cfg.PublishedURL("/api/ca"), "crl": cfg.PublishedURL("/api/crl"), "ocsp": cfg.PublishedURL("/api/ocsp"),
		"scep": cfg.URL("/api/scep/"), "csr": cfg.URL("/api/csr")}}
	if !cfg.API.Enabled {
		ov.APIProfile, ov.APIProfiles = "", nil
	}
	for _, c := range d.keys.Chain {
		ov.CA = append(ov.CA, admin.SummarizeCertificate(c))
	}
	if cur, _ := d.keys.RA(); cur != nil { // the live RA: renewals are picked up while running
		ra := admin.SummarizeCertificate(cur)
		ov.RA = &ra
	}
	ov.Key = admin.KeyInfo{Custody: "local", RAMode: cfg.RAMode}
	if k, ok := d.keys.CASigner.(interface {
		Name() string
		Version() string
		KID() string
	}); ok {
		ov.Key = admin.KeyInfo{Custody: "keyvault", Vault: cfg.KeyVaultURL, Name: k.Name(), Version: k.Version(), KID: k.KID(), RAMode: cfg.RAMode}
	}
	if d.crl != nil {
		c, err := d.crl.Current(ctx)
		if err != nil {
			if _, ok := httpx.Unavailable(err); !ok {
				d.log.Warn("overview: CRL unavailable", "err", err)
			}
			ov.CRLError = "the CRL could not be generated; see the log"
		} else {
			ov.CRL = &admin.CRLInfo{Number: admin.CRLNumber(c.Number), ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, Entries: c.Entries}
		}
	}
	ov.Warnings = make([]admin.ConfigWarning, 0, len(cfg.Warnings))
	for _, w := range cfg.Warnings {
		ov.Warnings = append(ov.Warnings, admin.ConfigWarning{Code: w.Code, Feature: w.Feature, Settings: w.Settings,
			Endpoints: w.Endpoints, Message: w.Message})
	}
	for _, e := range cfg.Endpoints {
		ov.Endpoints = append(ov.Endpoints, admin.EndpointInfo{Name: e.Name, Challenge: e.Challenge, Profile: e.Profile,
			URL: cfg.URL("/api/scep/" + e.Name)})
	}
	names := make([]string, 0, len(cfg.Profiles))
	for n := range cfg.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ov.Profiles = append(ov.Profiles, profileInfo(cfg.Profiles[n]))
	}
	return ov, nil
}

// days renders a profile validity the way the settings spell it (365d), or as a Go duration when not whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

func profileInfo(p *policy.Profile) admin.ProfileInfo {
	pi := admin.ProfileInfo{Name: p.Name, Validity: days(p.MaxValidity), KeyUsage: admin.KeyUsageNames(p.KeyUsage)}
	for _, u := range p.ExtKeyUsage {
		pi.EKU = append(pi.EKU, admin.ExtKeyUsageName(u))
	}
	for _, t := range []struct {
		t    policy.SANType
		name string
	}{{policy.SANDNS, "dns"}, {policy.SANEmail, "email"}, {policy.SANUPN, "upn"}, {policy.SANURI, "uri"}, {policy.SANIP, "ip"}} {
		if p.Allows(t.t) {
			pi.SANs = append(pi.SANs, t.name)
		}
	}
	return pi
}

// apiChoices are the profiles /api/csr callers may choose (AZSCEP_API_PROFILES), by name.
func apiChoices(cfg *config.Config) map[string]*policy.Profile {
	out := map[string]*policy.Profile{}
	for _, name := range cfg.API.Profiles {
		out[name] = cfg.Profiles[name]
	}
	return out
}
