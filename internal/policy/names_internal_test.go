package policy

import "testing"

// TestLookalikeFold pins what the look-alike test reads a value as: the compatibility form (NFKC) with the
// default-ignorable characters dropped and the IDNA label separators as dots, as UTS 46 reads a name.
func TestLookalikeFold(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"laptop-7.corp.example.com", "laptop-7.corp.example.com"},
		{"evil\u2024com", "evil.com"},                   // ONE DOT LEADER
		{"evil\uFE52com", "evil.com"},                   // SMALL FULL STOP
		{"evil\uFF0Ecom", "evil.com"},                   // FULLWIDTH FULL STOP
		{"evil\u3002com", "evil.com"},                   // IDEOGRAPHIC FULL STOP (UTS 46, not NFKC)
		{"evil\uFF61com", "evil.com"},                   // HALFWIDTH IDEOGRAPHIC FULL STOP, via U+3002
		{"evil\uFE12com", "evil.com"},                   // PRESENTATION FORM FOR VERTICAL IDEOGRAPHIC FULL STOP, via U+3002
		{"evil\u2488com", "evil1.com"},                  // DIGIT ONE FULL STOP
		{"admin\uFF20contoso.com", "admin@contoso.com"}, // FULLWIDTH COMMERCIAL AT
		{"admin\uFE6Bcontoso.com", "admin@contoso.com"}, // SMALL COMMERCIAL AT
		{"\u212Aim", "Kim"},                             // KELVIN SIGN
		{"\u017Fam", "sam"},                             // LONG S
		{"\uFF0A.bank.example", "*.bank.example"},       // FULLWIDTH ASTERISK
		{"evil\u00ADcorp", "evilcorp"},                  // SOFT HYPHEN (Cf)
		{"evil\u200Bcorp", "evilcorp"},                  // ZERO WIDTH SPACE (Cf)
		{"evil\u202Ecorp", "evilcorp"},                  // RIGHT-TO-LEFT OVERRIDE (Cf)
		{"evil\uFE0Fcorp", "evilcorp"},                  // VARIATION SELECTOR-16
		{"evil\u034Fcorp", "evilcorp"},                  // COMBINING GRAPHEME JOINER
		{"evil\u3164corp", "evilcorp"},                  // HANGUL FILLER
		{"evil\uFFA0corp", "evilcorp"},                  // HALFWIDTH HANGUL FILLER (NFKC: U+3164)
		{"Zo\u00EB M\u00FCller", "Zo\u00EB M\u00FCller"},
		{"Zoe\u0308", "Zo\u00EB"},
		{"\u6771\u4EAC\u30AA\u30D5\u30A3\u30B9", "\u6771\u4EAC\u30AA\u30D5\u30A3\u30B9"},
		{"\u0418\u0432\u0430\u043D", "\u0418\u0432\u0430\u043D"},
		{"\u043Aim", "\u043Aim"}, // Cyrillic к is a confusable, not a compatibility form: a different name (SameName)
	} {
		if got := lookalikeFold(tc.in); got != tc.want {
			t.Errorf("lookalikeFold(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
