package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// noSecret fails if any four characters in a row of secret appear in the warnings, as JSON or as Go prints them.
func noSecret(t *testing.T, ws []Warning, secret string) {
	t.Helper()
	j, err := json.Marshal(ws)
	if err != nil {
		t.Fatal(err)
	}
	text := string(j) + " " + strings.Join(func() []string {
		var s []string
		for _, w := range ws {
			s = append(s, w.Message)
		}
		return s
	}(), " ")
	for i := 0; i+4 <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+4]) {
			t.Fatalf("warnings show part of the secret (%q): %s", secret[i:i+4], text)
		}
	}
}

func loadWarnings(t *testing.T, env []string) []Warning {
	t.Helper()
	c, err := Load(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Faults) != 0 {
		t.Fatalf("faults: %v", c.FaultList())
	}
	return c.Warnings
}

// TestCleanConfigurationsWarnNothing: the defaults, and several endpoints with secrets and profiles of their own,
// load without a warning.
func TestCleanConfigurationsWarnNothing(t *testing.T) {
	for _, env := range [][]string{
		localEnv(),
		azureEnv(),
		azureEnv("AZSCEP_SCEP_ENDPOINTS=static,intune,gear,wide", "AZSCEP_SCEP_GEAR_SECRET=gear-secret-Qz7x",
			"AZSCEP_SCEP_WIDE=profile=wide;renew_from=gear", "AZSCEP_SCEP_WIDE_SECRET=wide-secret-Vw9k",
			"AZSCEP_PROFILE_WIDE=dns=*.corp.example.com,host-1.corp.example.com;upn=svc-gear@contoso.com;email=gear@contoso.com;uri=https://*.corp.example.com,tag:*;ip=10.0.0.0/8;identity_uris=devicecn"),
	} {
		if ws := loadWarnings(t, env); len(ws) != 0 {
			t.Errorf("%v: warnings %+v", env, ws)
		}
	}
}

// TestSharedChallengeWarns: static endpoints with one secret get exactly one warning naming them (and their
// secret settings), never the secret; an endpoint with its own secret is not named.
func TestSharedChallengeWarns(t *testing.T) {
	const secret = "Qz7xVw9kPj2mHs4R"
	ws := loadWarnings(t, azureEnv("AZSCEP_SCEP_ENDPOINTS=static,intune,gear,wide",
		"AZSCEP_SCEP_GEAR_SECRET="+secret, "AZSCEP_SCEP_WIDE=profile=wide", "AZSCEP_SCEP_WIDE_SECRET="+secret,
		"AZSCEP_PROFILE_WIDE=dns=*;upn=svc-gear@contoso.com"))
	if len(ws) != 1 {
		t.Fatalf("warnings = %+v, want one", ws)
	}
	w := ws[0]
	if w.Code != WarnSharedChallenge || w.Feature != "scep/gear" || !slices.Equal(w.Endpoints, []string{"gear", "wide"}) ||
		!slices.Equal(w.Settings, []string{"AZSCEP_SCEP_GEAR_SECRET", "AZSCEP_SCEP_WIDE_SECRET"}) ||
		!strings.Contains(w.Message, "gear (profile device)") || !strings.Contains(w.Message, "wide (profile wide)") ||
		strings.Contains(w.Message, "static (") {
		t.Errorf("warning = %+v", w)
	}
	noSecret(t, ws, secret)

	// Three endpoints on one secret: one warning naming all three.
	ws = loadWarnings(t, azureEnv("AZSCEP_SCEP_ENDPOINTS=static,gear,wide", "AZSCEP_SCEP_STATIC_SECRET="+secret,
		"AZSCEP_SCEP_GEAR_SECRET="+secret, "AZSCEP_SCEP_WIDE_SECRET="+secret))
	if len(ws) != 1 || !slices.Equal(ws[0].Endpoints, []string{"gear", "static", "wide"}) {
		t.Errorf("warnings = %+v, want one for gear, static and wide", ws)
	}
	noSecret(t, ws, secret)
}

// TestPublicChallengeWarns: in azure mode, a static endpoint whose secret is the local development challenge
// (printed in the README) is named; local mode, where it is the default, is not warned about.
func TestPublicChallengeWarns(t *testing.T) {
	ws := loadWarnings(t, azureEnv("AZSCEP_SCEP_STATIC_SECRET="+LocalStaticChallenge))
	if len(ws) != 1 || ws[0].Code != WarnPublicChallenge || ws[0].Feature != "scep/static" ||
		!slices.Equal(ws[0].Settings, []string{"AZSCEP_SCEP_STATIC_SECRET"}) {
		t.Fatalf("warnings = %+v, want public_challenge for static", ws)
	}
	// That secret is public, and made of words: the message must not spell it, even so.
	if j, _ := json.Marshal(ws); strings.Contains(string(j), LocalStaticChallenge) {
		t.Errorf("warning spells the challenge: %s", j)
	}
	if ws := loadWarnings(t, localEnv("AZSCEP_SCEP_STATIC_SECRET="+LocalStaticChallenge)); len(ws) != 0 {
		t.Errorf("local mode warnings = %+v", ws)
	}
}

// TestUnmatchablePatternWarns: each pattern Profile.Unmatchable lists is one warning naming the profile, its
// setting as written, the pattern and the endpoints using it; the live patterns beside it are not named.
func TestUnmatchablePatternWarns(t *testing.T) {
	ws := loadWarnings(t, localEnv("AZSCEP_SCEP_ENDPOINTS=static,routers,spare", "AZSCEP_SCEP_ROUTERS=profile=net",
		"AZSCEP_SCEP_ROUTERS_SECRET=router-secret-0123", "AZSCEP_SCEP_SPARE=profile=net", "AZSCEP_SCEP_SPARE_SECRET=spare-secret-0123",
		"AZSCEP_PROFILE_Net=dns=*.corp.example.com,10.0.0.1;uri=IntuneDeviceId:*,https://*.corp.example.com"))
	if len(ws) != 2 {
		t.Fatalf("warnings = %+v, want two", ws)
	}
	for i, pattern := range []string{"dns=10.0.0.1", "uri=IntuneDeviceId:*"} {
		w := ws[i]
		if w.Code != WarnUnmatchablePattern || w.Feature != "profile/net" || !slices.Equal(w.Settings, []string{"AZSCEP_PROFILE_Net"}) ||
			!slices.Equal(w.Endpoints, []string{"routers", "spare"}) || !strings.Contains(w.Message, pattern) {
			t.Errorf("warning %d = %+v, want %s", i, w, pattern)
		}
		if strings.Contains(w.Message, "corp.example.com") {
			t.Errorf("warning %d names a live pattern: %s", i, w.Message)
		}
	}
}

// TestStaticIdentityNamesWarn: a static endpoint whose profile lets the secret's holder name any user (a upn= or
// email= pattern with any local part) or an Entra/Intune identity (identity_uris=sid or intunedeviceid) is named,
// with the patterns, the profile's setting as written and the endpoint's; the same profile behind Intune's
// challenge, which vouches for each request's names, and literal names are not.
func TestStaticIdentityNamesWarn(t *testing.T) {
	ws := loadWarnings(t, azureEnv("AZSCEP_SCEP_ENDPOINTS=static,intune,gear,lab",
		"AZSCEP_SCEP_GEAR=profile=people", "AZSCEP_SCEP_GEAR_SECRET=Qz7xPj2mHs4RtY8u",
		"AZSCEP_SCEP_LAB=profile=lab", "AZSCEP_SCEP_LAB_SECRET=Vw9kLm3nBv6cXz1q",
		"AZSCEP_SCEP_INTUNE=challenge=intune;profile=people",
		"AZSCEP_PROFILE_People=dns=*.corp.example.com;upn=*@contoso.com,printer@contoso.com;email=*;identity_uris=sid,devicecn",
		"AZSCEP_PROFILE_LAB=dns=*.lab.example.com;identity_uris=intunedeviceid"))
	if len(ws) != 2 {
		t.Fatalf("warnings = %+v, want two", ws)
	}
	for i, want := range []struct {
		endpoint, setting string
		names             []string
	}{
		{"gear", "AZSCEP_PROFILE_People", []string{"upn=*@contoso.com", "email=*", "identity_uris=sid"}},
		{"lab", "AZSCEP_PROFILE_LAB", []string{"identity_uris=intunedeviceid"}},
	} {
		w := ws[i]
		if w.Code != WarnStaticIdentityNames || w.Feature != "scep/"+want.endpoint || !slices.Equal(w.Endpoints, []string{want.endpoint}) ||
			!slices.Equal(w.Settings, []string{want.setting, "AZSCEP_SCEP_" + strings.ToUpper(want.endpoint)}) ||
			!strings.Contains(w.Message, strings.Join(want.names, ", ")+":") {
			t.Errorf("warning %d = %+v, want %s naming %v", i, w, want.endpoint, want.names)
		}
		if strings.Contains(w.Message, "printer@") || strings.Contains(w.Message, "devicecn") {
			t.Errorf("warning %d names a narrow pattern: %s", i, w.Message)
		}
	}
	noSecret(t, ws, "Qz7xPj2mHs4RtY8u")
	noSecret(t, ws, "Vw9kLm3nBv6cXz1q")
}

// TestAPIAppID: the API's client ID is the GUID among the token audiences, bare or in an api:// App ID URI; a
// custom App ID URI alone gives none (roles are then not re-read, with a warning at start).
func TestAPIAppID(t *testing.T) {
	const id = "9f3c2a1e-4b5d-4c6e-8f70-112233445566"
	for _, tc := range []struct {
		aud  []string
		want string
	}{
		{[]string{id, "api://" + id}, id},
		{[]string{"api://" + strings.ToUpper(id)}, id},
		{[]string{"api://azscep.contoso.example"}, ""},
		{nil, ""},
	} {
		if got := (APIConfig{Audiences: tc.aud}).AppID(); got != tc.want {
			t.Errorf("AppID(%q) = %q, want %q", tc.aud, got, tc.want)
		}
	}
}

// TestAPIWarnings: with /api/csr enabled, audiences without the API's client ID (roles cannot be re-read) and no
// client-application allow-list (any consented client carries a user's roles) are each named with their setting;
// the API's client ID and a list of clients warn of nothing, and a disabled API of neither.
func TestAPIWarnings(t *testing.T) {
	const tenant, app, client = "0a0b0c0d-1111-4222-8333-444455556666", "9f3c2a1e-4b5d-4c6e-8f70-112233445566",
		"04b07795-8ddb-461a-bbee-02f9e1bf7b46"
	codes := func(ws []Warning) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Code+":"+strings.Join(w.Settings, ","))
		}
		return out
	}
	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{[]string{"AZSCEP_API_AUDIENCES=api://azscep.contoso.example", "AZSCEP_API_CLIENT_APPS=" + client},
			[]string{"roles_not_reread:AZSCEP_API_AUDIENCES"}},
		{[]string{"AZSCEP_API_AUDIENCES=" + app + ",api://" + app},
			[]string{"api_any_client_app:AZSCEP_API_CLIENT_APPS"}},
		{[]string{"AZSCEP_API_AUDIENCES=api://" + strings.ToUpper(app), "AZSCEP_API_CLIENT_APPS=" + client}, nil},
	} {
		env := append([]string{"AZSCEP_API_TENANT_ID=" + tenant}, tc.env...)
		ws := loadWarnings(t, azureEnv(env...))
		if got := codes(ws); !slices.Equal(got, tc.want) {
			t.Errorf("%v: warnings %v, want %v", tc.env, got, tc.want)
		}
		for _, w := range ws {
			if w.Feature != FeatureAPI || w.Message == "" {
				t.Errorf("%v: warning %+v", tc.env, w)
			}
		}
	}
	if ws := loadWarnings(t, azureEnv("AZSCEP_API_AUDIENCES=api://azscep.contoso.example")); len(ws) != 0 {
		t.Errorf("API disabled: warnings %+v", ws)
	}
	// An API a setting disabled (here its profile) serves nothing to warn about.
	c, err := Load(azureEnv("AZSCEP_API_TENANT_ID="+tenant, "AZSCEP_API_AUDIENCES=api://azscep.contoso.example",
		"AZSCEP_API_PROFILE=nosuchprofile"))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Enabled || len(c.Warnings) != 0 {
		t.Errorf("API disabled by a fault (enabled %v): warnings %+v", c.API.Enabled, c.Warnings)
	}
}

// TestTimerScheduleWarns: in azure mode the timer's schedule, which only the Functions host reads, is checked at
// start: missing, not read by the host (a TimeSpan, a 61st second, seven fields), never firing, or leaving
// more than half the CRL's validity between two runs (with the days as NCrontab reads them, in any month, and however
// densely the schedule fires elsewhere) is named with both settings; the hourly default, a run every five minutes and a
// six-hourly run beside a 24-hour CRL are not, and local mode never checks it.
func TestTimerScheduleWarns(t *testing.T) {
	const notRead = "not an NCRONTAB expression the Functions host reads"
	for _, tc := range []struct {
		env  []string
		want string // in the message; "" for no warning
	}{
		{[]string{"REVOCATION_SCHEDULE=0 0 * * * *"}, ""},
		{[]string{"REVOCATION_SCHEDULE=0 */5 * * * *"}, ""},
		{[]string{"REVOCATION_SCHEDULE=0 0 */6 * * *"}, ""},
		{[]string{"REVOCATION_SCHEDULE="}, "not set"},
		{[]string{"REVOCATION_SCHEDULE=01:00:00"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=61 0 * * * *"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 * * * *"}, notRead},
		// As the host reads it (NCrontab): five fields are a schedule without seconds, names are read by any leading
		// part, a range high to low is swapped; ?, a time zone and tabs between fields are refused.
		{[]string{"REVOCATION_SCHEDULE=0 * * * *"}, ""},
		{[]string{"REVOCATION_SCHEDULE=0 0 * * January-DEC Sunday-Sat"}, ""},
		{[]string{"REVOCATION_SCHEDULE=0 0 22-2 * * *"}, ""},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 * * Monday"}, "up to 168h0m0s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=0 0 ? * * *"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=CRON_TZ=UTC 0 0 * * * *"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=0\t0 * * * *"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=0 0 * * * 1,,5"}, notRead},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 30 2 *"}, "never fires"},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 * * *"}, "up to 24h0m0s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 1 * *"}, "up to 744h0m0s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=0 0 */6 * * *", "AZSCEP_CRL_VALIDITY=8h"}, "up to 6h0m0s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=0 0 0 * * *", "AZSCEP_CRL_VALIDITY=72h"}, ""},
		// NCrontab runs on the days matching both day fields (cron: either): weekdays only, Friday 23:00 to Monday.
		{[]string{"REVOCATION_SCHEDULE=0 0 * 1-31 * 1-5"}, "up to 49h0m0s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=0 0 * 1-31 * *"}, ""},
		// Dense firings for hours hide no gap: every second from 00:00 to 05:59:59, then none until midnight.
		{[]string{"REVOCATION_SCHEDULE=* * 0-5 * * *"}, "up to 18h0m1s between two runs"},
		{[]string{"REVOCATION_SCHEDULE=* * 0-5,12-17 * * *"}, ""},
		// Every month counts: the weekdays written in the month field run hourly from January to May only.
		{[]string{"REVOCATION_SCHEDULE=0 0 * * 1-5 *", "AZSCEP_CRL_VALIDITY=744h"}, "up to 5137h0m0s between two runs"},
	} {
		ws := loadWarnings(t, azureEnv(tc.env...))
		var got []Warning
		for _, w := range ws {
			if w.Code == WarnTimerSchedule {
				got = append(got, w)
			}
		}
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%v: warnings %+v, want none", tc.env, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0].Message, tc.want) || got[0].Feature != "timer" ||
			!slices.Equal(got[0].Settings, []string{"REVOCATION_SCHEDULE", "AZSCEP_CRL_VALIDITY"})):
			t.Errorf("%v: warnings %+v, want one saying %q", tc.env, got, tc.want)
		}
	}
	if ws := loadWarnings(t, localEnv("REVOCATION_SCHEDULE=nonsense")); len(ws) != 0 {
		t.Errorf("local mode: warnings %+v", ws)
	}
}

// TestRenewalMaxWithinValidityWarns: an endpoint whose renewal_max is no longer than its profile's validity (equal
// included: the first certificate already ends then) is named, with its setting and its profile's; one whose
// renewal_max exceeds the validity, or that sets none (3 × the validity), is not.
func TestRenewalMaxWithinValidityWarns(t *testing.T) {
	ws := loadWarnings(t, localEnv("AZSCEP_SCEP_ENDPOINTS=static,short,equal,longer,unset",
		"AZSCEP_PROFILE_Year=validity=365d;ku=digitalSignature;eku=clientAuth;dns=*.corp.example.com",
		"AZSCEP_SCEP_SHORT=profile=year;renewal_max=90d", "AZSCEP_SCEP_SHORT_SECRET=short-secret-Qz7x",
		"AZSCEP_SCEP_EQUAL=renewal_max=365d", "AZSCEP_SCEP_EQUAL_SECRET=equal-secret-Vw9k",
		"AZSCEP_SCEP_LONGER=profile=year;renewal_max=8761h", "AZSCEP_SCEP_LONGER_SECRET=longer-secret-Pj2m",
		"AZSCEP_SCEP_UNSET=profile=year", "AZSCEP_SCEP_UNSET_SECRET=unset-secret-Hs4R"))
	if len(ws) != 2 {
		t.Fatalf("warnings = %+v, want two", ws)
	}
	for i, want := range []struct{ endpoint, setting, profileSetting, text string }{
		{"equal", "AZSCEP_SCEP_EQUAL", "AZSCEP_PROFILE_DEVICE", "renewal_max=365d, no longer than the validity of its profile device (365d)"},
		{"short", "AZSCEP_SCEP_SHORT", "AZSCEP_PROFILE_Year", "renewal_max=90d, no longer than the validity of its profile year (365d)"},
	} {
		w := ws[i]
		if w.Code != WarnRenewalMax || w.Feature != "scep/"+want.endpoint || !slices.Equal(w.Endpoints, []string{want.endpoint}) ||
			!slices.Equal(w.Settings, []string{want.setting, want.profileSetting}) || !strings.Contains(w.Message, want.text) {
			t.Errorf("warning %d = %+v, want %s", i, w, want.endpoint)
		}
	}
}
