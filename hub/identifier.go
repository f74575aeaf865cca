package hub

import (
	"net/mail"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Identifier is a normalised email address or E.164 phone number.
type Identifier struct {
	Value string
	Kind  string // KindEmail or KindPhone
}

// Channel is how messages reach the identifier.
func (id Identifier) Channel() string {
	if id.Kind == KindPhone {
		return ChannelSMS
	}
	return ChannelEmail
}

// ParseEmail normalises an email address: net/mail parses it, the domain is lower-cased
// (domains are case-insensitive; local parts officially are not, so they are kept).
// Display names ("Ann <ann@example.com>") are refused: an identifier is an address only.
func ParseEmail(field, s string) (Identifier, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Identifier{}, FieldError(EInvalid, field, "email is required")
	}
	if len(s) > 254 {
		return Identifier{}, FieldError(EInvalid, field, "email is longer than 254 characters")
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return Identifier{}, FieldError(EInvalid, field, "not an email address such as ann@example.com")
	}
	at := strings.LastIndexByte(addr.Address, '@')
	local, domain := addr.Address[:at], strings.ToLower(addr.Address[at+1:])
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, "[") {
		return Identifier{}, FieldError(EInvalid, field, "email domain must be a host name such as example.com")
	}
	return Identifier{Value: local + "@" + domain, Kind: KindEmail}, nil
}

// ParsePhone normalises a phone number to E.164. Without a region to guess from, the number
// must be international: starting with + and the country code.
func ParsePhone(field, s string) (Identifier, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Identifier{}, FieldError(EInvalid, field, "phone is required")
	}
	if len(s) > 32 {
		return Identifier{}, FieldError(EInvalid, field, "phone is longer than 32 characters")
	}
	if strings.HasPrefix(s, "00") {
		s = "+" + s[2:]
	}
	if !strings.HasPrefix(s, "+") {
		return Identifier{}, FieldError(EInvalid, field, "phone must be international, starting with + and the country code, e.g. +14155550100")
	}
	num, err := phonenumbers.Parse(s, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return Identifier{}, FieldError(EInvalid, field, "not a valid phone number")
	}
	return Identifier{Value: phonenumbers.Format(num, phonenumbers.E164), Kind: KindPhone}, nil
}

// ParseIdentifier takes the request's email, phone and identifier fields, of which exactly
// one must be set; identifier means either, told apart by the @.
func ParseIdentifier(email, phone, identifier string) (Identifier, error) {
	// Trim before both counting and branching: a blank email beside a phone is no email.
	email, phone, identifier = strings.TrimSpace(email), strings.TrimSpace(phone), strings.TrimSpace(identifier)
	set := 0
	for _, s := range []string{email, phone, identifier} {
		if s != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return Identifier{}, FieldError(EInvalid, "identifier", "give an email, a phone or an identifier")
	case set > 1:
		return Identifier{}, FieldError(EInvalid, "identifier", "give only one of email, phone and identifier")
	case email != "":
		return ParseEmail("email", email)
	case phone != "":
		return ParsePhone("phone", phone)
	case strings.Contains(identifier, "@"):
		return ParseEmail("identifier", identifier)
	default:
		return ParsePhone("identifier", identifier)
	}
}
