package harness

import (
	"crypto/sha256"
	"encoding/hex"
)

// KeyHash is the lowercase hex SHA-256 of key: the key_sha256 of an API key
// in a Caddyfile, and the hash under which a token or session is stored.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// MintAnswer is the 201 JSON body of POST /sso/tokens (SPEC, the token API).
type MintAnswer struct {
	ID                     string `json:"id"`
	SSOToken               string `json:"ssoToken"`
	UserID                 string `json:"userId"`
	CreatedByApplicationID string `json:"createdByApplicationId"`
	CreationTimestamp      string `json:"creationTimestamp"`
	ExpiresAt              string `json:"expiresAt"`
	URL                    string `json:"url"`
}
