package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// Warning is a setting that loads and serves but weakens authorization, or does not do what it says: the service
// runs as configured and logs it at start, `azscep config check` prints it and the admin overview lists it. This
// release only warns, because refusing would take endpoints that work today down on upgrade; a later release
// refuses the mistakes among them (shared and public challenges, unmatchable patterns), while the others may be an
// operator's informed choice. A warning never holds a setting's value when that value is a secret.
type Warning struct {
	// Code is stable, for queries and the console: one of the Warn* constants.
	Code string `json:"code"`
	// Feature is the endpoint or profile the warning is about (EndpointFeature, ProfileFeature).
	Feature string `json:"feature"`
	// Settings are the settings to change.
	Settings []string `json:"settings"`
	// Endpoints are the enabled SCEP endpoints concerned, sorted.
	Endpoints []string `json:"endpoints,omitempty"`
	Message   string   `json:"message"`
}

// Warning codes.
const (
	// WarnSharedChallenge: static endpoints with one challenge secret. Whoever holds it for the narrowest of
	// them enrolls at the widest, so the narrow endpoint's separate profile protects nothing.
	WarnSharedChallenge = "shared_challenge"
	// WarnPublicChallenge: a static endpoint in azure mode whose secret is LocalStaticChallenge, which the README
	// and `make run` print for local mode: anyone can enroll there.
	WarnPublicChallenge = "public_challenge"
	// WarnUnmatchablePattern: a profile pattern that no name can match (policy.Profile.Unmatchable). The profile
	// refuses names its operator believes it allows, and the usual "fix" widens another list.
	WarnUnmatchablePattern = "unmatchable_pattern"
	// WarnStaticIdentityNames: a static endpoint whose profile lets the requester name any user or Entra/Intune
	// identity (policy.Profile.AnyIdentity). Nobody vouches for a static request's names, so whoever holds the
	// secret can get a certificate that relying parties take as any user in the domain or any managed device.
	WarnStaticIdentityNames = "static_identity_names"
	// WarnRolesNotReread: the API's audiences name no client ID (only a custom App ID URI), so Graph cannot tell
	// which app roles are the API's: an application's or a user's role taken away keeps working until its tokens
	// expire, at /api/csr and the admin API alike.
	WarnRolesNotReread = "roles_not_reread"
	// WarnAnyClientApp: /api/csr takes a user's token from any client application. Entra puts the user's app roles
	// into the token of every client the user consented to, so an application a user was talked into consenting to
	// (consent phishing) can obtain certificates in the user's name that outlive a session revocation.
	WarnAnyClientApp = "api_any_client_app"
	// WarnTimerSchedule: in azure mode, REVOCATION_SCHEDULE is missing, is no NCRONTAB expression the Functions host
	// runs (six fields, seconds first, or five without them, as NCrontab reads them; Flex Consumption takes no
	// TimeSpan), or leaves more than half the CRL's validity between two runs. The timer runs the Intune revocation
	// sync and keeps the CRL signed when nobody fetches it; without it revocations wait, and the CRL can lapse, which
	// relying parties treat as "revoked".
	WarnTimerSchedule = "timer_schedule"
	// WarnRenewalMax: a SCEP endpoint whose renewal_max is no longer than its profile's validity. A renewed
	// certificate ends no later than the chain's first issuance plus renewal_max, and the first certificate already
	// ends then or later (its validity counts from the back-dated notBefore), so a renewal never extends a
	// certificate: it only replaces the key until the first certificate's end, and the devices enroll again from
	// scratch when it expires, which the operator who set a renewal window meant to avoid.
	WarnRenewalMax = "renewal_max_within_validity"
)

// scheduleSpan is how far ahead the timer's schedule is followed to find its longest gap: two years from a January,
// so that every month of the year and a leap day are in it (a month field of 1-5, written for the weekdays, stops
// the timer from June to December).
const scheduleSpan = 731 * 24 * time.Hour

// cronStar is robfig/cron's mark on a day field written as * or ?, which it does not export.
const cronStar = 1 << 63

// ncrontabDays runs a schedule on the days NCrontab does: those matching both the day of the month and the day of
// the week. Where both fields are restricted, cron and robfig/cron take a day matching either ("0 0 * 1-31 * 1-5" is
// every hour to them, weekdays only to NCrontab), which would hide the host's longer gaps.
type ncrontabDays struct {
	dom *cron.SpecSchedule // the schedule on every day its day of the month names
	dow uint64
}

func (s ncrontabDays) Next(t time.Time) time.Time {
	for {
		n := s.dom.Next(t)
		if n.IsZero() || s.dow&(1<<uint(n.Weekday())) != 0 {
			return n
		}
		// The next day: robfig/cron gives up after five years, so a schedule on no such day ends.
		t = time.Date(n.Year(), n.Month(), n.Day(), 23, 59, 59, 0, n.Location())
	}
}

// asNCrontab is sched as the Functions host runs it.
func asNCrontab(sched cron.Schedule) cron.Schedule {
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok || spec.Dom&cronStar != 0 || spec.Dow&cronStar != 0 {
		return sched
	}
	dom := *spec
	dom.Dow = cronStar | 1<<7 - 1
	return ncrontabDays{dom: &dom, dow: spec.Dow}
}

// ncrontabNames are the names NCrontab reads in the month and weekday fields: any leading part of one, in any case,
// stands for the first name it begins ("Mon", "MONDAY", "M"); robfig/cron reads only the three-letter forms.
var ncrontabNames = map[int][]string{
	4: {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	5: {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"},
}

// ncrontabToCron reads expr as the Functions host does (its timer extension over NCrontab) and writes it for
// robfig/cron's six-field parser, which checks the values' ranges. The host splits the fields at spaces only, takes
// five fields as a schedule without seconds, reads names by their leading part, swaps a range written high to low,
// and takes a step below 1 as 1; robfig/cron would refuse some of these and accept what NCrontab refuses (?, a TZ=
// prefix, an empty list item, tabs between fields).
func ncrontabToCron(expr string) (string, error) {
	if strings.ContainsFunc(expr, func(r rune) bool { return r != ' ' && unicode.IsSpace(r) }) {
		return "", fmt.Errorf("fields are separated by spaces only")
	}
	fields := strings.Fields(expr)
	switch len(fields) {
	case 5:
		fields = append([]string{"0"}, fields...)
	case 6:
	default:
		return "", fmt.Errorf("%d fields", len(fields))
	}
	value := func(f int, v string) (string, error) {
		if v == "" {
			return "", fmt.Errorf("an empty value")
		}
		if v[0] >= '0' && v[0] <= '9' {
			n, err := strconv.Atoi(v)
			if err != nil {
				return "", fmt.Errorf("%q is not a number", v)
			}
			return strconv.Itoa(n), nil
		}
		for i, name := range ncrontabNames[f] {
			if len(v) <= len(name) && strings.EqualFold(name[:len(v)], v) {
				if f == 4 {
					i++
				}
				return strconv.Itoa(i), nil
			}
		}
		return "", fmt.Errorf("%q is no value of field %d", v, f+1)
	}
	for f, field := range fields {
		var items []string
		for _, item := range strings.Split(field, ",") {
			base, step, stepped := strings.Cut(item, "/")
			if stepped {
				n, err := strconv.Atoi(strings.TrimPrefix(step, "+"))
				if err != nil || base == "" {
					return "", fmt.Errorf("%q is not a step", item)
				}
				step = "/" + strconv.Itoa(max(n, 1))
			}
			switch lo, hi, isRange := strings.Cut(base, "-"); {
			case base == "*":
			case isRange && lo != "":
				a, err := value(f, lo)
				if err != nil {
					return "", err
				}
				b, err := value(f, hi)
				if err != nil {
					return "", err
				}
				if an, bn := atoi(a), atoi(b); an > bn {
					a, b = b, a
				}
				base = a + "-" + b
			default:
				v, err := value(f, base)
				if err != nil {
					return "", err
				}
				base = v
			}
			items = append(items, base+step)
		}
		fields[f] = strings.Join(items, ",")
	}
	return strings.Join(fields, " "), nil
}

// atoi is strconv.Atoi for the numbers ncrontabToCron wrote.
func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// timerScheduleFault says what is wrong with the timer's schedule, or "".
func timerScheduleFault(schedule string, crlValidity time.Duration) string {
	if schedule == "" {
		return "REVOCATION_SCHEDULE is not set: the Functions host does not start the timer without it"
	}
	spec, err := ncrontabToCron(schedule)
	var parsed cron.Schedule
	if err == nil {
		parsed, err = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse(spec)
	}
	if err != nil {
		return fmt.Sprintf("REVOCATION_SCHEDULE is not an NCRONTAB expression the Functions host reads (six fields: "+
			"second minute hour day month weekday, or five without the second): %v; the host does not start the timer", err)
	}
	sched := asNCrontab(parsed)
	// Any fixed start will do: the host runs the schedule in UTC, and the span covers every month.
	from := time.Date(2027, time.January, 1, 0, 0, 0, 0, time.UTC)
	end := from.Add(scheduleSpan)
	next := func(t time.Time) time.Time {
		if n := sched.Next(t); !n.IsZero() && !n.After(end) {
			return n
		}
		return end
	}
	t := next(from)
	if !t.Before(end) {
		return "REVOCATION_SCHEDULE never fires"
	}
	// Only a gap longer than limit matters, so the schedule is followed in steps of half of it rather than firing
	// by firing (a schedule may fire every second for hours, then not for a day): where the first firing after
	// t+step is within limit of the firing t, every gap in between is too; where it is not, the last firing up to
	// t+step is found by bisection, and the gap after it measured.
	limit := crlValidity / 2
	step := (limit / 2).Truncate(time.Second)
	gap := t.Sub(from)
	for t.Before(end) {
		n := next(t.Add(step))
		if n.Sub(t) > limit {
			lo, hi := 0, int(step/time.Second) // next(t+hi s) is n; the last firing up to t+step is t+k s, k the least such
			for lo < hi {
				mid := (lo + hi) / 2
				if next(t.Add(time.Duration(mid) * time.Second)).Equal(n) {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			gap = max(gap, n.Sub(t.Add(time.Duration(lo)*time.Second)))
		}
		t = n
	}
	if gap > limit {
		return fmt.Sprintf("REVOCATION_SCHEDULE leaves up to %s between two runs, more than half the CRL's validity "+
			"(AZSCEP_CRL_VALIDITY %s): revocation requests from Intune wait that long, and a CRL nobody fetches can "+
			"lapse before the timer signs the next", gap, crlValidity)
	}
	return ""
}

// days writes d as the settings do: "90d" for whole days, else Go's form ("36h0m0s").
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// secretSetting is the setting holding endpoint e's static challenge.
func secretSetting(e Endpoint) string { return "AZSCEP_SCEP_" + strings.ToUpper(e.Name) + "_SECRET" }

// profileSetting is the setting that defines profile name, as written (AZSCEP_PROFILE_Net), or its upper-case form
// when no single setting does (a built-in profile, or one written twice).
func profileSetting(name string, profileSettings map[string][]string) string {
	if s := profileSettings[name]; len(s) == 1 {
		return s[0]
	}
	return "AZSCEP_PROFILE_" + strings.ToUpper(name)
}

// warnings finds the hazards of a loaded configuration: the enabled endpoints and the profiles that loaded.
// profileSettings maps each profile an AZSCEP_PROFILE_<NAME> setting defines to that setting's name.
func warnings(c *Config, profileSettings map[string][]string) []Warning {
	var out []Warning
	eps := slices.Clone(c.Endpoints)
	sort.Slice(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })

	// Secrets are compared by their SHA-256 and never leave this function: grouping by a digest needs no secret
	// in a map key or a message, and a digest's equality is the secret's.
	groups := map[[sha256.Size]byte][]Endpoint{}
	var order [][sha256.Size]byte
	for _, e := range eps {
		if e.Challenge != "static" || e.Secret == "" {
			continue
		}
		if c.Mode == ModeAzure && subtle.ConstantTimeCompare([]byte(e.Secret), []byte(LocalStaticChallenge)) == 1 {
			out = append(out, Warning{Code: WarnPublicChallenge, Feature: EndpointFeature(e.Name),
				Settings: []string{secretSetting(e)}, Endpoints: []string{e.Name},
				Message: fmt.Sprintf("SCEP endpoint %s uses the local development challenge that README.md and `make run` "+
					"print as its static challenge: anyone can enroll there; set %s to a secret of its own", e.Name, secretSetting(e))})
		}
		h := sha256.Sum256([]byte(e.Secret))
		if groups[h] == nil {
			order = append(order, h)
		}
		groups[h] = append(groups[h], e)
	}
	for _, h := range order {
		g := groups[h]
		if len(g) < 2 {
			continue
		}
		w := Warning{Code: WarnSharedChallenge, Feature: EndpointFeature(g[0].Name)}
		var named []string
		for _, e := range g {
			w.Settings = append(w.Settings, secretSetting(e))
			w.Endpoints = append(w.Endpoints, e.Name)
			named = append(named, fmt.Sprintf("%s (profile %s)", e.Name, e.Profile))
		}
		w.Message = fmt.Sprintf("SCEP endpoints %s share one static challenge: whoever holds it for one enrolls at "+
			"every one of them, with the widest profile; give each endpoint a secret of its own (%s)",
			strings.Join(named, ", "), strings.Join(w.Settings, ", "))
		out = append(out, w)
	}

	for _, e := range eps {
		p := c.Profiles[e.Profile]
		if e.Challenge != "static" || p == nil {
			continue
		}
		wide := p.AnyIdentity()
		if len(wide) == 0 {
			continue
		}
		setting := profileSetting(e.Profile, profileSettings)
		out = append(out, Warning{Code: WarnStaticIdentityNames, Feature: EndpointFeature(e.Name),
			Settings: []string{setting, "AZSCEP_SCEP_" + strings.ToUpper(e.Name)}, Endpoints: []string{e.Name},
			Message: fmt.Sprintf("SCEP endpoint %s takes a static challenge, and its profile %s allows %s: whoever holds "+
				"the secret can name any such user or device, which certificate-based sign-in and network access take "+
				"as that identity; list the exact names in %s, or issue user and device identities through Intune or "+
				"/api/csr self-service", e.Name, e.Profile, strings.Join(wide, ", "), setting)})
	}

	for _, e := range eps {
		p := c.Profiles[e.Profile]
		if e.RenewalMax == 0 || p == nil || e.RenewalMax > p.MaxValidity {
			continue
		}
		setting := "AZSCEP_SCEP_" + strings.ToUpper(e.Name)
		out = append(out, Warning{Code: WarnRenewalMax, Feature: EndpointFeature(e.Name),
			Settings: []string{setting, profileSetting(e.Profile, profileSettings)}, Endpoints: []string{e.Name},
			Message: fmt.Sprintf("SCEP endpoint %s sets renewal_max=%s, no longer than the validity of its profile %s "+
				"(%s): a renewed certificate ends no later than the chain's first one, so renewal never extends a "+
				"certificate and devices enroll again when it expires; set renewal_max in %s above %s, or remove it "+
				"(the default is 3 × the validity)", e.Name, days(e.RenewalMax), e.Profile, days(p.MaxValidity), setting,
				days(p.MaxValidity))})
	}

	if c.API.Enabled && c.API.TenantID != "" && c.API.AppID() == "" {
		out = append(out, Warning{Code: WarnRolesNotReread, Feature: FeatureAPI, Settings: []string{"AZSCEP_API_AUDIENCES"},
			Message: "AZSCEP_API_AUDIENCES names no client ID (a GUID, bare or as api://<GUID>), so app roles are not " +
				"re-read in Graph: a role taken from a user or an application keeps working at /api/csr and the admin " +
				"API until its tokens expire; add the API's client ID to AZSCEP_API_AUDIENCES"})
	}
	if c.API.Enabled && c.API.TenantID != "" && len(c.API.ClientApps) == 0 {
		out = append(out, Warning{Code: WarnAnyClientApp, Feature: FeatureAPI, Settings: []string{"AZSCEP_API_CLIENT_APPS"},
			Message: "/api/csr takes users' tokens from any client application: an application a user consented to " +
				"carries the user's roles and can obtain certificates in the user's name; list the client applications " +
				"your users enrol with in AZSCEP_API_CLIENT_APPS, or allow only administrators to consent in the tenant"})
	}

	if c.Mode == ModeAzure {
		if why := timerScheduleFault(c.RevocationSchedule, c.CRLValidity); why != "" {
			out = append(out, Warning{Code: WarnTimerSchedule, Feature: "timer",
				Settings: []string{"REVOCATION_SCHEDULE", "AZSCEP_CRL_VALIDITY"}, Message: why})
		}
	}

	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		dead := c.Profiles[n].Unmatchable()
		if len(dead) == 0 {
			continue
		}
		setting := profileSetting(n, profileSettings)
		var users []string
		for _, e := range eps {
			if e.Profile == n {
				users = append(users, e.Name)
			}
		}
		for _, d := range dead {
			out = append(out, Warning{Code: WarnUnmatchablePattern, Feature: ProfileFeature(n), Settings: []string{setting},
				Endpoints: users, Message: fmt.Sprintf("profile %s: %s=%s never matches a name the CA accepts: %s",
					n, d.Key, d.Pattern, d.Reason)})
		}
	}
	return out
}
