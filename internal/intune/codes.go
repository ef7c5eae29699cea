package intune

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Code is the "code" member of a ScepActions answer (intune-protocol.md §6.4).
// It is a string type, not an enum: unknown values are preserved verbatim so
// they can be logged, and they are failures like every code but CodeSuccess.
type Code string

// ScepActions result codes, spelled exactly as Intune sends them. Only
// CodeSuccess (compared case-sensitively) means the call succeeded.
const (
	CodeSuccess                                Code = "Success"
	CodeCertificateRequestDecodingFailed       Code = "CertificateRequestDecodingFailed"
	CodeChallengePasswordMissing               Code = "ChallengePasswordMissing"
	CodeChallengeDeserializationError          Code = "ChallengeDeserializationError"
	CodeChallengeDecryptionError               Code = "ChallengeDecryptionError"
	CodeChallengeDecodingError                 Code = "ChallengeDecodingError"
	CodeChallengeInvalidTimestamp              Code = "ChallengeInvalidTimestamp"
	CodeChallengeExpired                       Code = "ChallengeExpired"
	CodeSubjectNameMissing                     Code = "SubjectNameMissing"
	CodeSubjectNameMismatch                    Code = "SubjectNameMismatch"
	CodeSubjectAltNameMissing                  Code = "SubjectAltNameMissing"
	CodeSubjectAltNameMismatch                 Code = "SubjectAltNameMismatch"
	CodeKeyUsageMismatch                       Code = "KeyUsageMismatch"
	CodeKeyLengthMismatch                      Code = "KeyLengthMismatch"
	CodeEnhancedKeyUsageMissing                Code = "EnhancedKeyUsageMissing"
	CodeEnhancedKeyUsageMismatch               Code = "EnhancedKeyUsageMismatch"
	CodeAadKeyIdentifierListMissing            Code = "AadKeyIdentifierListMissing"
	CodeRegisteredKeyMismatch                  Code = "RegisteredKeyMismatch"
	CodeSigningCertThumbprintMismatch          Code = "SigningCertThumbprintMismatch"
	CodeScepProfileNoLongerTargetedToTheClient Code = "ScepProfileNoLongerTargetedToTheClient"
	CodeSignatureValidationFailed              Code = "SignatureValidationFailed"
	CodeBadCertificateRequestIDInChallenge     Code = "BadCertificateRequestIdInChallenge"
	CodeBadDeviceIDInChallenge                 Code = "BadDeviceIdInChallenge"
	CodeBadUserIDInChallenge                   Code = "BadUserIdInChallenge"
)

// HRESULT values for failureNotification. They are customer-defined codes
// (C bit 0x2000_0000 set, severity bit clear) so they stay positive whether
// the receiver reads them as signed or unsigned (intune-protocol.md §6.3).
// Document any new value here: admins see it in the Intune console.
const (
	// HResultIssuanceFailed: the CA could not issue after a successful validation.
	HResultIssuanceFailed uint32 = 0x20000001
	// HResultPolicyRejected: the request passed Intune but failed local issuance policy.
	HResultPolicyRejected uint32 = 0x20000002
	// HResultSigningFailed: the signing key (Key Vault) failed or was unavailable.
	HResultSigningFailed uint32 = 0x20000003
	// HResultStorageFailed: the issuance record could not be persisted.
	HResultStorageFailed uint32 = 0x20000004
	// HResultSCEPFailInfoBase plus an RFC 8894 failInfo value (0..4) reports a
	// SCEP-level failure, following EJBCA's convention.
	HResultSCEPFailInfoBase uint32 = 0x20000100
)

// RevocationErrorCode is CARequestErrorCode (intune-protocol.md §7.5), the
// outcome of one revocation request reported by uploadRevocationResults.
type RevocationErrorCode int

// Revocation outcome codes. 40xx are permanent, 41xx ask Intune to try again.
const (
	RevocationNone                         RevocationErrorCode = 0
	RevocationNonRetryableServiceException RevocationErrorCode = 4000
	RevocationDataSerializationError       RevocationErrorCode = 4001
	RevocationParameterDataInvalidError    RevocationErrorCode = 4002
	RevocationCryptographyError            RevocationErrorCode = 4003
	RevocationCertificateNotFoundError     RevocationErrorCode = 4004
	RevocationConflictError                RevocationErrorCode = 4005
	RevocationNotSupportedError            RevocationErrorCode = 4006
	RevocationPayloadTooLargeError         RevocationErrorCode = 4007
	RevocationRetryableServiceException    RevocationErrorCode = 4100
	RevocationServiceUnavailableException  RevocationErrorCode = 4101
	RevocationServiceTooBusyException      RevocationErrorCode = 4102
	RevocationAuthenticationException      RevocationErrorCode = 4103
)

var revocationCodeNames = map[RevocationErrorCode]string{
	RevocationNone:                         "None",
	RevocationNonRetryableServiceException: "NonRetryableServiceException",
	RevocationDataSerializationError:       "DataSerializationError",
	RevocationParameterDataInvalidError:    "ParameterDataInvalidError",
	RevocationCryptographyError:            "CryptographyError",
	RevocationCertificateNotFoundError:     "CertificateNotFoundError",
	RevocationConflictError:                "ConflictError",
	RevocationNotSupportedError:            "NotSupportedError",
	RevocationPayloadTooLargeError:         "PayloadTooLargeError",
	RevocationRetryableServiceException:    "RetryableServiceException",
	RevocationServiceUnavailableException:  "ServiceUnavailableException",
	RevocationServiceTooBusyException:      "ServiceTooBusyException",
	RevocationAuthenticationException:      "AuthenticationException",
}

// String returns the enum member name Intune expects on the wire; it never
// panics: an undefined value is rendered as its decimal number.
func (c RevocationErrorCode) String() string {
	if n, ok := revocationCodeNames[c]; ok {
		return n
	}
	return strconv.Itoa(int(c))
}

// Known reports whether c is one of the defined CARequestErrorCode values.
// Only known codes may be uploaded.
func (c RevocationErrorCode) Known() bool {
	_, ok := revocationCodeNames[c]
	return ok
}

// Retryable reports whether the code asks Intune to offer the request again
// (the 41xx range).
func (c RevocationErrorCode) Retryable() bool { return c >= 4100 && c < 4200 }

// MarshalJSON encodes the member name (the C# library's canonical form).
func (c RevocationErrorCode) MarshalJSON() ([]byte, error) {
	if !c.Known() {
		return nil, fmt.Errorf("%w: undefined revocation error code %d", ErrInvalidArgument, int(c))
	}
	return json.Marshal(c.String())
}

// ParseRevocationErrorCode accepts a member name (case-insensitive) or a
// decimal string, the two encodings seen in the wild.
func ParseRevocationErrorCode(s string) (RevocationErrorCode, bool) {
	s = strings.TrimSpace(s)
	for c, n := range revocationCodeNames {
		if strings.EqualFold(n, s) {
			return c, true
		}
	}
	if v, err := strconv.Atoi(s); err == nil {
		c := RevocationErrorCode(v)
		return c, c.Known()
	}
	return 0, false
}
