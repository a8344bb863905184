package custody

import "context"

// Caller is the authenticated principal making a request, as read from a
// verified access token.
type Caller struct {
	ObjectID string // oid claim: the principal's object id.
	AppID    string // appid claim: the client id.
	TenantID string // tid claim.
	Issuer   string // iss claim.
	Audience string // aud claim the token was verified against.
}

// String names the caller the way Azure's error messages do.
func (c Caller) String() string {
	return "appid=" + c.AppID + ";oid=" + c.ObjectID + ";iss=" + c.Issuer
}

type callerKey struct{}

// WithCaller returns a context carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller in ctx, if any.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
