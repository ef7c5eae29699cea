package policy

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Name allow-lists. A profile names every SAN type it allows with its own key and a comma-separated list of
// patterns; a type without a key is refused. The syntax and its semantics (README "Profiles"):
//
//	dns=host.corp.example.com,*.corp.example.com,**.lab.example.com
//	    exact name; "*." one label; "**." one or more labels; case-insensitive; no pattern matches the suffix itself
//	email=*@corp.example.com,alice@example.com      upn=*@contoso.com,*@**.contoso.com
//	    "*" or an exact local part (case-insensitive), "@", then a DNS pattern for the domain
//	ip=10.0.0.0/8,192.0.2.7,2001:db8::/32
//	    CIDR blocks or single addresses; 0.0.0.0/0 and ::/0 are refused (write "*")
//	uri=https://*.corp.example.com,spiffe://corp.example.com,urn:*
//	    scheme and a DNS pattern for the host (any port, path, query; no user info, no "@" anywhere), or "scheme:*"
//	identity_uris=sid,intunedeviceid
//	    the Microsoft identity URIs (tag:microsoft.com,2022-09-14:sid:… and IntuneDeviceId://…): refused unless
//	    listed here, whatever uri= says
//
// "*" alone allows every well-formed name of the type and is the only way to say so: an empty list, a bare type
// name (the old san=dns,upn) or a pattern that covers everything without saying "*" is a configuration error.

// IdentityURI is a kind of Microsoft identity name a profile may opt in to (identity_uris=): an identity URI, or a
// common name shaped like a device ID.
type IdentityURI uint8

// The identity names relying parties treat as proof of who someone is: Entra/AD strong certificate mapping reads
// the SID URI, Intune and Entra device-based access read the device ID URI, and network access servers look a CN
// shaped like a device ID (Intune's CN={{AAD_Device_ID}}) up as that device.
const (
	IdentitySID IdentityURI = 1 << iota
	IdentityIntuneDeviceID
	// IdentityDeviceCN is a common name shaped like a device ID (a GUID): its own opt-in (devicecn), so that a
	// static fleet named by hardware UUIDs need not also allow IntuneDeviceId:// URIs; intunedeviceid implies it.
	IdentityDeviceCN
)

var identityURINames = map[string]IdentityURI{"sid": IdentitySID, "intunedeviceid": IdentityIntuneDeviceID | IdentityDeviceCN,
	"devicecn": IdentityDeviceCN}

// msTagPrefix starts the opaque part of Intune's SID URI (tag:microsoft.com,2022-09-14:sid:<SID>). Every
// tag:microsoft.com URI counts as a SID URI, compared case-insensitively, so that a variant date or suffix cannot
// slip past as an ordinary URI.
const msTagPrefix = "microsoft.com,"

// sidURIPrefix is the one spelling of a SID URI the CA issues (KB5014754's strong mapping): SIDOf.
const sidURIPrefix = "tag:microsoft.com,2022-09-14:sid:"

// IdentityURIKind classifies u: IdentitySID for tag:microsoft.com URIs and for any URI that names a SID
// (holdsSID), IdentityIntuneDeviceID for IntuneDeviceId:// URIs and for the ID:<product>:GUID:<id> form network
// access servers read the Intune device ID from (Cisco ISE's ID:Microsoft Endpoint Manager:GUID:{{DeviceId}}),
// schemes compared case-insensitively; 0 for anything else.
//
// A tag:microsoft.com URI is a SID URI in its hierarchical form too (tag://microsoft.com,…/sid/…), and with
// another date or no date (tag:microsoft.com:sid:…). A SID in any other URI (https://x.example/sid/S-1-5-21-…,
// urn:sid:S-1-5-21-…, a query or a fragment) makes it a SID URI as well: a mapper that takes the SID from where it
// finds one (a search for "sid", for "S-1-") would map the certificate to that account, so only the opt-in to SID
// URIs may let one in, never uri= patterns, and then only in the one spelling (SIDOf).
//
// An ID: URI is of the device form wherever its "GUID:" is: readers take the device ID from what follows the last
// "GUID:" of the URI's text, so ID:/Intune:GUID:<id> (a path), ID:x?:GUID:<id> (a query) and ID:x#:GUID:<id> (a
// fragment), which url.URL does not keep in the opaque part, name the device as much as the opaque form does.
func IdentityURIKind(u *url.URL) IdentityURI {
	// The tag is compared percent-decoded too: "tag:microsoft.com%2C2022-09-14:sid:…" must not pass as an
	// ordinary URI for a reader that decodes it.
	text := afterScheme(u)
	switch {
	case strings.EqualFold(u.Scheme, "tag") && (namesMicrosoft(text) || namesMicrosoft(u.Opaque)), holdsSID(text),
		holdsSID(u.String()):
		return IdentitySID
	case strings.EqualFold(u.Scheme, "intunedeviceid"),
		strings.EqualFold(u.Scheme, "id") && strings.Contains(strings.ToLower(text), deviceIDMark):
		return IdentityIntuneDeviceID
	}
	return 0
}

// namesMicrosoft reports whether the text after a tag: scheme begins with the tagging authority microsoft.com
// (RFC 4151), also written hierarchically ("//microsoft.com,…") or padded, and followed by the date's ","
// (msTagPrefix), by nothing, or by anything that ends the authority (":", "/", "?", "#"): each is a SID URI's
// authority to a reader that compares less than all of it.
func namesMicrosoft(text string) bool {
	text = strings.ToLower(strings.TrimLeftFunc(strings.TrimLeft(text, "/"), isPadding))
	rest, ok := strings.CutPrefix(text, "microsoft.com")
	return ok && (rest == "" || strings.ContainsRune(",:/?#", rune(rest[0])))
}

// holdsSID reports whether s holds a Windows security identifier: "S-1-" (either case) and a digit, not preceded
// by a letter or a digit ("S-1-5-21-…", "/S-1-5-18", "sid:s-1-5-32-544"; not "items-1-2").
func holdsSID(s string) bool {
	for i := 0; i+5 <= len(s); i++ {
		if (s[i] == 'S' || s[i] == 's') && s[i+1:i+4] == "-1-" && isDigit(s[i+4]) &&
			(i == 0 || !isAlnum(s[i-1])) {
			return true
		}
	}
	return false
}

// SIDOf is the SID a SID URI names when it is written exactly as Intune writes it for strong certificate mapping,
// tag:microsoft.com,2022-09-14:sid:<SID> (sidURIPrefix, compared case-insensitively, without percent-encoding),
// with nothing after the SID; "" otherwise. <SID> is S-1-<authority>-<subauthority>…, each a decimal number.
func SIDOf(u *url.URL) string {
	prefix := sidURIPrefix[len("tag:"):]
	if !strings.EqualFold(u.Scheme, "tag") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		len(u.Opaque) <= len(prefix) || !SameName(u.Opaque[:len(prefix)], prefix) {
		return ""
	}
	sid := u.Opaque[len(prefix):]
	if !sidShaped(sid) {
		return ""
	}
	return sid
}

// sidShaped reports whether s is a SID in its string form: "S-1-" (either case), then an identifier authority and
// one to fifteen subauthorities, each a decimal number of at most 15 digits.
func sidShaped(s string) bool {
	rest, ok := strings.CutPrefix(s, "S-1-")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "s-1-"); !ok {
			return false
		}
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 || len(parts) > 16 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 15 || strings.ContainsFunc(p, func(r rune) bool { return r < '0' || r > '9' }) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// deviceIDMark, compared case-insensitively, is what the device ID follows in an ID: URI (and in a common name:
// deviceIDShaped).
const deviceIDMark = "guid:"

// afterScheme is u's text after its scheme and ":" — the opaque part, or "//host/path", then "?query" and
// "#fragment" — percent-decoded when it decodes: where a reader that searches the URI's text finds its marks.
func afterScheme(u *url.URL) string {
	s := u.String()
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[i+1:]
	}
	if d, err := url.PathUnescape(s); err == nil {
		s = d
	}
	return s
}

// AllowList is the patterns a profile allows for one SAN type.
type AllowList struct {
	// Any is the explicit "*": every well-formed name of the type.
	Any      bool
	Patterns []string // as configured, for messages

	dns  []dnsPattern
	mail []mailPattern
	uri  []uriPattern
	nets []*net.IPNet
}

// dnsPattern is an exact name (wild 0), "*.suffix" (wild 1: exactly one more label) or "**.suffix" (wild 2: one
// or more labels). Stored lower-case.
type dnsPattern struct {
	wild   int
	suffix string
}

type mailPattern struct {
	local  string // "" = any local part
	domain dnsPattern
}

type uriPattern struct {
	scheme string // lower-case
	any    bool   // "scheme:*"
	host   dnsPattern
}

func parseDNSPattern(s string) (dnsPattern, error) {
	s = strings.ToLower(s)
	p := dnsPattern{}
	switch {
	case strings.HasPrefix(s, "**."):
		p.wild, s = 2, s[3:]
	case strings.HasPrefix(s, "*."):
		p.wild, s = 1, s[2:]
	}
	if !validDNSName(s) {
		return p, fmt.Errorf("%q is not a DNS name, *.name or **.name", s)
	}
	p.suffix = s
	return p, nil
}

func (p dnsPattern) match(name string) bool {
	name = strings.ToLower(name)
	if p.wild == 0 {
		return name == p.suffix
	}
	prefix, ok := strings.CutSuffix(name, "."+p.suffix)
	if !ok || prefix == "" {
		return false
	}
	return p.wild == 2 || !strings.Contains(prefix, ".")
}

func parseMailPattern(s string) (mailPattern, error) {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" {
		return mailPattern{}, fmt.Errorf("%q is not local@domain or *@domain", s)
	}
	m := mailPattern{}
	if local != "*" {
		if strings.Contains(local, "*") || !validEmailLike(local+"@example.com") {
			return m, fmt.Errorf("%q: the local part is * or a literal name", s)
		}
		m.local = local
	}
	d, err := parseDNSPattern(domain)
	if err != nil {
		return m, fmt.Errorf("%q: %w", s, err)
	}
	m.domain = d
	return m, nil
}

func (m mailPattern) match(name string) bool {
	local, domain, ok := strings.Cut(name, "@")
	return ok && (m.local == "" || SameName(local, m.local)) && m.domain.match(domain)
}

// SameName reports whether two names are equal up to ASCII case, the way DNS and Entra compare them. Unlike
// strings.EqualFold it does not apply Unicode folding, under which U+212A KELVIN SIGN equals "k" and U+017F LONG S
// equals "s": a look-alike is a different name to every relying party that compares names as ASCII.
func SameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func parseURIPattern(s string) (uriPattern, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || !validScheme(scheme) {
		return uriPattern{}, fmt.Errorf("%q is not scheme://host-pattern or scheme:*", s)
	}
	p := uriPattern{scheme: strings.ToLower(scheme)}
	if rest == "*" {
		p.any = true
		return p, nil
	}
	host, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return p, fmt.Errorf("%q is not scheme://host-pattern or scheme:*", s)
	}
	h, err := parseDNSPattern(host)
	if err != nil {
		return p, fmt.Errorf("%q: %w", s, err)
	}
	p.host = h
	return p, nil
}

func validScheme(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func (p uriPattern) match(u *url.URL) bool {
	if !strings.EqualFold(u.Scheme, p.scheme) {
		return false
	}
	if p.any {
		return true
	}
	// A host pattern needs a hierarchical URI with a host and no user info (which some parsers read as the host),
	// and no "@" anywhere else either (hasAt).
	return u.Opaque == "" && u.User == nil && !hasAt(u) && u.Host != "" && validDNSName(u.Hostname()) &&
		!numericHost(u.Hostname()) && p.host.match(u.Hostname())
}

// hasAt reports whether u has an "@" anywhere, also percent-encoded. A host pattern vouches for the host, and
// parsers differ on where the host is once an "@" follows it: curl before 7.51.0 (CVE-2016-8624) ended the
// authority at "/" or "?" only, so it read https://a.corp.example.com#@evil.com as user info before the host
// evil.com; a parser that ends it at "/" only, or takes the host after the last "@" of the string, reads "?@" or
// "/@" so too; and one that decodes the URL first reads %40 as "@". A pattern cannot be written to cover user
// info, so no URI a host pattern allows has one; "scheme:*" and "*", which vouch for no host, still allow any.
func hasAt(u *url.URL) bool {
	s := u.String()
	return strings.Contains(s, "@") || strings.Contains(strings.ToLower(s), "%40")
}

func parseIPPattern(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR block", s)
		}
		if v4 := ip.To4(); v4 != nil {
			return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}, nil
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}, nil
	}
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IP address or CIDR block", s)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", s, n)
	}
	if v4 := n.IP.To4(); v4 != nil && len(n.IP) == net.IPv6len {
		return nil, fmt.Errorf("%q is an IPv4-mapped block: write it as an IPv4 block", s)
	}
	if ones, _ := n.Mask.Size(); ones == 0 {
		return nil, fmt.Errorf("%q matches every address: write * to allow any", s)
	}
	return n, nil
}

// parseAllowList reads the comma-separated patterns of one SAN type.
func parseAllowList(t SANType, v string) (*AllowList, error) {
	items := splitList(v)
	if len(items) == 0 {
		return nil, fmt.Errorf("no patterns: remove the key to refuse these names, or write * to allow any")
	}
	l := &AllowList{Patterns: items}
	for _, s := range items {
		if s == "*" {
			l.Any = true
			continue
		}
		var err error
		switch t {
		case SANDNS:
			var p dnsPattern
			if p, err = parseDNSPattern(s); err == nil {
				l.dns = append(l.dns, p)
			}
		case SANEmail, SANUPN:
			var p mailPattern
			if p, err = parseMailPattern(s); err == nil {
				l.mail = append(l.mail, p)
			}
		case SANURI:
			var p uriPattern
			if p, err = parseURIPattern(s); err == nil {
				l.uri = append(l.uri, p)
			}
		case SANIP:
			var n *net.IPNet
			if n, err = parseIPPattern(s); err == nil {
				l.nets = append(l.nets, n)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// matchAny is true for the explicit "*" or when one of the patterns matches; false for a type without a list.
func matchAny[T any](l *AllowList, patterns func(*AllowList) []T, match func(T) bool) bool {
	if l == nil {
		return false
	}
	if l.Any {
		return true
	}
	for _, p := range patterns(l) {
		if match(p) {
			return true
		}
	}
	return false
}

func (l *AllowList) matchDNS(name string) bool {
	return matchAny(l, func(l *AllowList) []dnsPattern { return l.dns }, func(p dnsPattern) bool { return p.match(name) })
}

func (l *AllowList) matchMail(name string) bool {
	return matchAny(l, func(l *AllowList) []mailPattern { return l.mail }, func(p mailPattern) bool { return p.match(name) })
}

func (l *AllowList) matchURI(u *url.URL) bool {
	return matchAny(l, func(l *AllowList) []uriPattern { return l.uri }, func(p uriPattern) bool { return p.match(u) })
}

func (l *AllowList) matchIP(ip net.IP) bool {
	return matchAny(l, func(l *AllowList) []*net.IPNet { return l.nets }, func(n *net.IPNet) bool { return n.Contains(ip) })
}

// AllowsDNS reports whether the profile allows the DNS name (type and pattern).
func (p *Profile) AllowsDNS(name string) bool { return p.Names[SANDNS].matchDNS(name) }

// AllowsDomain reports whether the profile's DNS allow-list names the domain itself or the hosts under it (*.domain,
// **.domain): the domain an Active Directory subject's domain components name, the parent of its hosts.
func (p *Profile) AllowsDomain(domain string) bool {
	domain = strings.ToLower(domain)
	return p.AllowsDNS(domain) || matchAny(p.Names[SANDNS], func(l *AllowList) []dnsPattern { return l.dns },
		func(d dnsPattern) bool { return d.wild != 0 && d.suffix == domain })
}

// AllowsEmail reports whether the profile allows the rfc822Name.
func (p *Profile) AllowsEmail(name string) bool { return p.Names[SANEmail].matchMail(name) }

// AllowsUPN reports whether the profile allows the UPN otherName.
func (p *Profile) AllowsUPN(name string) bool { return p.Names[SANUPN].matchMail(name) }

// AllowsIP reports whether the profile allows the IP address.
func (p *Profile) AllowsIP(ip net.IP) bool { return p.Names[SANIP].matchIP(ip) }

// AllowsURI reports whether the profile allows the URI: an identity URI only when the profile opts in to its
// kind (uri= patterns, even "*", never admit one); any other URI when it matches the uri= allow-list.
func (p *Profile) AllowsURI(u *url.URL) bool {
	if k := IdentityURIKind(u); k != 0 {
		return p.IdentityURIs&k != 0
	}
	return p.Names[SANURI].matchURI(u)
}

// WithIdentityURIs returns a copy of p that also accepts the identity URIs in k. A door that authorizes such a
// name itself (self-service device ownership checked in Graph) uses it; the configured profile is not changed.
func (p *Profile) WithIdentityURIs(k IdentityURI) *Profile {
	c := *p
	c.IdentityURIs |= k
	return &c
}

// checkNameLike constrains a subject attribute value that looks like a name, so that a relying party that reads
// the subject (RADIUS servers mapping the CN to a user, legacy TLS clients matching the CN to a host) is held to
// the same allow-lists as the SANs: something@domain must be an allowed UPN or e-mail name, an IP address (or a
// value whose first word is one, leadingIP) an allowed IP, something with a scheme (x://, tag:, urn:) an allowed URI
// (also when it has an "@" and is an allowed e-mail name too), and a dotted DNS name an allowed DNS name. A single
// label ("router-17", an IMEI, a serial number, a device GUID) and free text are not names.
//
// Three shapes are refused whatever the profile: a wildcard (wildcard certificates are never issued, and OpenSSL
// matches a host against a CN when the certificate has no DNS SAN), a dotted name that is not a valid DNS name (a
// trailing dot, an underscore, Unicode letters: TLS clients normalise these before matching), and a name written
// in look-alike characters: a value whose compatibility form (lookalikeFold) differs from it and has one of the
// shapes above.
func checkNameLike(p *Profile, what, v string) error {
	refuse := func(kind string) error {
		return reject(CodeSubject, "%s %q looks like %s that profile %s does not allow", what, clip(v), kind, p.Name)
	}
	f := lookalikeFold(v)
	if strings.Contains(f, "*") {
		return refuse("a wildcard name")
	}
	if f != v && nameKindOf(f) != notAName {
		return reject(CodeSubject, "%s %+q writes a name in look-alike characters (it reads as %q)", what, clip(v), clip(f))
	}
	allowedURI := func() bool {
		u, err := url.Parse(v)
		if err != nil || !p.AllowsURI(u) {
			return false
		}
		// An identity URI in the subject is held to the one spelling the SANs are (SIDOf, DeviceIDOf): a reader
		// that takes it from the subject must not find another account or device than the policy did.
		switch IdentityURIKind(u) {
		case IdentitySID:
			return SIDOf(u) != ""
		case IdentityIntuneDeviceID:
			return DeviceIDOf(u) != ""
		}
		return true
	}
	switch nameKindOf(v) {
	case emailLike:
		if !validEmailLike(v) || !(p.AllowsUPN(v) || p.AllowsEmail(v)) {
			return refuse("a UPN or e-mail address")
		}
		// An "@" does not make a URI an e-mail name: "https://evil.example/@corp.example.com" and
		// "IntuneDeviceId://<id>@corp.example.com" end in an allowed domain, but a reader that takes the value for
		// the URI it is written as reads another host, or a device identity. Such a value is both names, and the
		// profile must allow both.
		if looksLikeURI(v) && !allowedURI() {
			return refuse("a URI")
		}
	case ipAddress:
		if ip := net.ParseIP(leadingIP(v)); ip == nil || !p.AllowsIP(ip) {
			return refuse("an IP address")
		}
	case uriLike:
		if !allowedURI() {
			return refuse("a URI")
		}
	case dnsLike:
		if !validDNSName(v) || !p.AllowsDNS(v) {
			return refuse("a DNS name")
		}
	}
	return nil
}

// nameKind is what a subject attribute value looks like to a relying party.
type nameKind int

const (
	notAName  nameKind = iota // a single label or free text
	emailLike                 // something@domain
	ipAddress
	uriLike
	dnsLike // dotted, made of name characters (dnsShaped)
)

func nameKindOf(v string) nameKind {
	switch {
	case strings.Contains(v, "@"):
		return emailLike
	case leadingIP(v) != "":
		return ipAddress
	case looksLikeURI(v):
		return uriLike
	case dnsShaped(v):
		return dnsLike
	}
	return notAName
}

// leadingIP is the part of v a reader takes for an IP address, or "" when it takes none: v itself when it is an
// address or dotted with a number last ("10.1" and "0x0a.0.0.1" are 10.0.0.1 to inet_aton and TLS stacks), else
// its first word when that is an address or dotted numbers. inet_aton stops at the first space, so "10.0.0.1
// printer" is 10.0.0.1 to it, and a reader that splits or trims the value finds the same. A single number is not
// an address (a CN may be an IMEI or a serial number), nor is free text that ends in one ("Build 10.0.19045") or
// whose first word merely ends in one ("v1.2 beta": inet_aton needs every part to be a number).
func leadingIP(v string) string {
	if net.ParseIP(v) != nil || dnsShaped(v) && numericHost(v) {
		return v
	}
	words := strings.FieldsFunc(v, isPadding)
	if len(words) == 0 || words[0] == v {
		return ""
	}
	w := words[0]
	if net.ParseIP(w) != nil {
		return w
	}
	labels := strings.Split(w, ".")
	if len(labels) < 2 {
		return ""
	}
	for _, l := range labels {
		if l == "" || !numericHost(l) {
			return ""
		}
	}
	return w
}

// isPadding is white space to any reader that trims or splits a value: Unicode White_Space (unicode.IsSpace: the
// ASCII spaces, U+0085, U+00A0 NO-BREAK SPACE, every Zs space such as U+3000 IDEOGRAPHIC SPACE, U+2028 and U+2029),
// and what older Unicode versions and .NET Framework's Trim counted too: U+180E MONGOLIAN VOWEL SEPARATOR, U+200B
// ZERO WIDTH SPACE and U+FEFF ZERO WIDTH NO-BREAK SPACE (the byte order mark).
func isPadding(r rune) bool {
	return unicode.IsSpace(r) || r == '\u180E' || r == '\u200B' || r == '\uFEFF'
}

// padding returns the white space (isPadding) v begins or ends with, if any. Relying parties trim subject values
// (.NET's Trim, Python's strip, LDAP's insignificant-space matching, RFC 4518), so " 10.0.0.1" or
// "host.evil.com\u00A0" would be read as the name the policy, seeing free text, never held to the allow-lists.
func padding(v string) (rune, bool) {
	first, _ := utf8.DecodeRuneInString(v)
	last, _ := utf8.DecodeLastRuneInString(v)
	switch {
	case v == "":
		return 0, false
	case isPadding(first):
		return first, true
	case isPadding(last):
		return last, true
	}
	return 0, false
}

// dnsShaped is true for a dotted value made only of letters (any script), digits, '-', '_' and '.': what a TLS
// client could take for a host name once it has normalised it. Free text has spaces or other punctuation.
func dnsShaped(v string) bool {
	if !strings.Contains(v, ".") {
		return false
	}
	for _, r := range v {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '_' && r != '.' {
			return false
		}
	}
	return true
}

// lookalikeFold is v as a reader that normalises names reads it: invisible characters dropped, then the Unicode
// compatibility form (NFKC), with the IDNA label separators as dots. It follows UTS 46 (the mapping IDNA
// applies before a name is looked up or compared) in everything that changes a name's shape: NFKC turns
// fullwidth and small forms into ASCII ("ＡＤＭＩＮ＠…", U+FE52 SMALL FULL STOP, U+FE6B SMALL COMMERCIAL AT), the
// leaders and the parenthesized or full-stop digits into ASCII punctuation (U+2024 ONE DOT LEADER is ".", U+2488
// "⒈" is "1."), and letter-like symbols into letters (U+212A KELVIN SIGN is "K"); UTS 46 also maps U+3002
// IDEOGRAPHIC FULL STOP (to which NFKC turns U+FF61 and U+FE12) to ".", and drops the default-ignorable
// characters. So a value whose fold differs from it and is name-shaped is a name written in look-alike
// characters, while ordinary text in any script ("Zoë Müller", "東京オフィス", "Иван") either folds to itself or
// to something that is still not a name.
func lookalikeFold(v string) string {
	ascii := true
	for i := 0; i < len(v) && ascii; i++ {
		ascii = v[i] < utf8.RuneSelf
	}
	if ascii {
		return v // ASCII has no invisible characters and is its own NFKC form
	}
	f := norm.NFKC.String(strings.Map(dropInvisible, v))
	return strings.Map(func(r rune) rune {
		if r == 0x3002 {
			return '.'
		}
		return dropInvisible(r)
	}, f)
}

// dropInvisible drops the characters a reader does not see and IDNA mapping removes (UTS 46 maps the
// default-ignorable code points to nothing): format characters (soft hyphen, zero-width space and joiners, bidi
// controls), variation selectors, and the other default-ignorables (combining grapheme joiner, Hangul fillers).
// "evil\u00ADcorp.example.com" is evilcorp.example.com.
func dropInvisible(r rune) rune {
	if r >= utf8.RuneSelf && unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) {
		return -1
	}
	return r
}

// looksLikeURI is true for "scheme://…" and for the opaque schemes relying parties read identities from.
func looksLikeURI(v string) bool {
	if strings.Contains(v, "://") {
		return true
	}
	scheme, _, ok := strings.Cut(v, ":")
	switch strings.ToLower(scheme) {
	case "tag", "urn", "intunedeviceid", "mailto", "sip":
		return ok
	}
	return false
}

// numericHost is true for a name whose last label is a number (decimal, 0x hex or octal): inet_aton and many TLS
// stacks read "10.0.0.1", "10.1" and "0x0a000001" as IPv4 addresses; no top-level domain is numeric. A bare "0x"
// is a number too: the WHATWG URL parser (browsers, Node) reads it as 0, so "10.0.0.0x" is 10.0.0.0 to it, while
// strconv.ParseUint refuses it.
func numericHost(d string) bool {
	last := d[strings.LastIndex(d, ".")+1:]
	if strings.EqualFold(last, "0x") {
		return true
	}
	_, err := strconv.ParseUint(last, 0, 32)
	return err == nil
}

// UnmatchablePattern is an allow-list pattern that parses but that no name can ever match: Check refuses every
// name it seems to allow before (or instead of) asking the pattern. It narrows nothing and allows nothing, so the
// operator who wrote it believes the profile allows names it refuses, and may "fix" that by widening another list.
type UnmatchablePattern struct {
	Key     string // the profile key: dns, uri, ...
	Pattern string // as configured
	Reason  string
}

// sanKeys are the allow-list keys in the order a profile setting usually writes them.
var sanKeys = []string{"dns", "email", "upn", "uri", "ip"}

// Unmatchable lists the profile's patterns that no name can match, by key and in configured order. It asks the
// same predicates Check does, so that a pattern is listed only if Check refuses every name the pattern covers:
//
//   - a DNS pattern (dns=, or the host of a uri= pattern) whose last label is a number: every name it covers is
//     an IPv4 address to inet_aton and TLS stacks (numericHost), which checkSAN refuses as a DNS name, uriPattern
//     refuses as a URI host, and checkNameLike reads as an IP address, not a DNS name;
//   - a uri= pattern of a scheme whose every URI is an identity URI (IntuneDeviceId://): those are governed by
//     identity_uris= alone (AllowsURI never asks uri= for one).
func (p *Profile) Unmatchable() []UnmatchablePattern {
	var out []UnmatchablePattern
	for _, key := range sanKeys {
		l := p.Names[sanTypeNames[key]]
		if l == nil {
			continue
		}
		for _, s := range l.Patterns {
			if why := unmatchable(sanTypeNames[key], s); why != "" {
				out = append(out, UnmatchablePattern{Key: key, Pattern: s, Reason: why})
			}
		}
	}
	return out
}

// AnyIdentity lists the profile's patterns that let a requester name any of many people or Entra/Intune
// identities, as "key=pattern" in configured order: a upn= or email= pattern with any local part (*@domain, or
// the explicit *), and identity_uris=sid or intunedeviceid. Relying parties map such names to accounts and devices
// (Entra certificate-based authentication and AD strong mapping read the UPN and the SID URI, network access servers
// the e-mail name and the device URI), so where nobody vouches for each request's names (a static challenge) the
// holder of the secret can become any of them. A literal name (alice@contoso.com) and a CN shaped like a device ID
// (devicecn, the opt-in for static fleets named by hardware UUIDs) are not listed.
func (p *Profile) AnyIdentity() []string {
	var out []string
	for _, key := range []string{"upn", "email"} {
		l := p.Names[sanTypeNames[key]]
		if l == nil {
			continue
		}
		for _, s := range l.Patterns {
			if local, _, _ := strings.Cut(s, "@"); local == "*" {
				out = append(out, key+"="+s)
			}
		}
	}
	if p.IdentityURIs&IdentitySID != 0 {
		out = append(out, "identity_uris=sid")
	}
	if p.IdentityURIs&IdentityIntuneDeviceID != 0 {
		out = append(out, "identity_uris=intunedeviceid")
	}
	return out
}

// unmatchable says why no name matches pattern s of type t, or "" when some name may. s parsed when the profile
// did, so a parse error here cannot happen; it is read as "may match".
func unmatchable(t SANType, s string) string {
	const numeric = "its last label is a number, so every name it covers is an IPv4 address to TLS clients, which the CA " +
		"refuses as a %s; allow IP addresses with ip="
	switch t {
	case SANDNS:
		if d, err := parseDNSPattern(s); err == nil && numericHost(d.suffix) {
			return fmt.Sprintf(numeric, "DNS name")
		}
	case SANURI:
		u, err := parseURIPattern(s)
		if err != nil {
			return ""
		}
		// Every URI of the scheme, in either form, is an identity URI when the hierarchical form with any host is.
		if IdentityURIKind(&url.URL{Scheme: u.scheme, Host: "host"}) != 0 &&
			IdentityURIKind(&url.URL{Scheme: u.scheme, Opaque: "x"}) != 0 {
			return "every " + u.scheme + " URI is an identity URI, which only identity_uris= allows (uri= patterns, " +
				"even *, never admit one)"
		}
		if !u.any && numericHost(u.host.suffix) {
			return fmt.Sprintf(numeric, "URI host")
		}
	}
	return ""
}
