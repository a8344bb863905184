package custody

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Azure Resource Manager's limits on the tags of a resource or resource
// group.
const (
	MaxTags           = 50
	MaxTagNameLength  = 512
	MaxTagValueLength = 256
)

// tagNameReserved are the characters ARM refuses in tag names.
const tagNameReserved = `<>%&\?/`

// CheckTags checks tags against ARM's limits: at most 50 tags, names of 1 to
// 512 characters without the reserved characters <>%&\?/ or control
// characters, values of at most 256 characters. what names the resource for
// the message ("resource group 'rg1'").
func CheckTags(tags map[string]string, what string) error {
	if len(tags) > MaxTags {
		return Errorf(KindInvalid, "InvalidTag",
			"%s has %d tags; a resource may have at most %d. Remove some tags and retry.", what, len(tags), MaxTags)
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v := tags[k]
		switch {
		case strings.TrimSpace(k) == "":
			return &Error{Kind: KindInvalid, Code: "InvalidTagName", Target: "tags",
				Message: "A tag name of " + what + " is empty; give every tag a name of 1 to 512 characters."}
		case utf8.RuneCountInString(k) > MaxTagNameLength:
			return Errorf(KindInvalid, "InvalidTagName",
				"The tag name '%s' of %s has %d characters; a tag name may have at most %d.", clip(k), what, utf8.RuneCountInString(k), MaxTagNameLength)
		case strings.ContainsAny(k, tagNameReserved) || strings.IndexFunc(k, unicode.IsControl) >= 0:
			return Errorf(KindInvalid, "InvalidTagNameCharacters",
				"The tag name '%s' of %s has reserved characters '<,>,%%,&,\\,?,/' or control characters; rename the tag.", clip(k), what)
		case utf8.RuneCountInString(v) > MaxTagValueLength:
			return Errorf(KindInvalid, "InvalidTagValueLength",
				"The value of tag '%s' of %s has %d characters; a tag value may have at most %d.", clip(k), what, utf8.RuneCountInString(v), MaxTagValueLength)
		}
	}
	return nil
}

// clip shortens s for a message, so that an over-long name is not echoed
// whole.
func clip(s string) string {
	const n = 64
	if utf8.RuneCountInString(s) <= n {
		return strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return '?'
			}
			return r
		}, s)
	}
	i := 0
	for j := range s {
		if i == n {
			return clip(s[:j]) + "..."
		}
		i++
	}
	return s
}
