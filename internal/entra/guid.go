package entra

import "strings"

// isGUID reports whether s is a GUID in the canonical 8-4-4-4-12 hex form that
// Entra uses for tenant, object and device IDs. Checking the shape before an ID
// goes into a URL path or an OData literal is what keeps those URLs injection
// free; nothing else is accepted, not even braces.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

// IsGUID is isGUID for other packages (settings that hold Entra IDs).
func IsGUID(s string) bool { return isGUID(s) }

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// normGUID lower-cases a GUID for comparison; Entra emits lower case but Graph
// and CSRs may not.
func normGUID(s string) string { return strings.ToLower(s) }

// nilGUID is what Intune reports as azureADDeviceId for devices that are not
// Entra-registered.
const nilGUID = "00000000-0000-0000-0000-000000000000"
