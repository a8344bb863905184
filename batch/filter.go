package batch

import (
	"strings"

	"custody"
)

// Filter is a parsed OData $filter over a record's clear properties. The
// grammar is the subset Batch clients use:
//
//	expr    = term *( "or" term )
//	term    = factor *( "and" factor )
//	factor  = "(" expr ")" | "not" factor | prop ("eq" | "ne") 'literal'
//	        | "startswith(" prop "," 'literal' ")"
//
// Properties and values compare case-insensitively. A nil *Filter matches
// everything.
type Filter struct {
	node filterNode
}

type filterNode struct {
	op    string // or, and, not, eq, ne, startswith
	kids  []filterNode
	prop  string // lower-cased
	value string
}

// Match reports whether a record with the given properties (keys
// lower-cased) matches.
func (f *Filter) Match(props map[string]string) bool {
	if f == nil {
		return true
	}
	return f.node.match(props)
}

func (n *filterNode) match(p map[string]string) bool {
	switch n.op {
	case "or":
		for i := range n.kids {
			if n.kids[i].match(p) {
				return true
			}
		}
		return false
	case "and":
		for i := range n.kids {
			if !n.kids[i].match(p) {
				return false
			}
		}
		return true
	case "not":
		return !n.kids[0].match(p)
	case "eq":
		return strings.EqualFold(p[n.prop], n.value)
	case "ne":
		return !strings.EqualFold(p[n.prop], n.value)
	case "startswith":
		return strings.HasPrefix(strings.ToLower(p[n.prop]), strings.ToLower(n.value))
	}
	return false
}

// States returns the states a matching record must be in, so the store
// can select them by index: those of a disjunction of "state eq '...'"
// terms, alone or as one operand of an "and"; nil otherwise (every state
// may match).
func (f *Filter) States() []string {
	if f == nil {
		return nil
	}
	var walk func(n *filterNode) ([]string, bool)
	walk = func(n *filterNode) ([]string, bool) {
		switch {
		case n.op == "eq" && n.prop == "state":
			return []string{strings.ToLower(n.value)}, true
		case n.op == "or":
			var out []string
			for i := range n.kids {
				s, ok := walk(&n.kids[i])
				if !ok {
					return nil, false
				}
				out = append(out, s...)
			}
			return out, true
		case n.op == "and":
			// Every operand must hold: the states of one of them bound
			// the records.
			for i := range n.kids {
				if s, ok := walk(&n.kids[i]); ok {
					return s, true
				}
			}
		}
		return nil, false
	}
	out, _ := walk(&f.node)
	return out
}

// ParseFilter parses expr, allowing only the given properties. An empty
// expr gives a nil filter.
func ParseFilter(expr string, props ...string) (*Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	if len(expr) > 4096 {
		return nil, badFilter("the filter is longer than 4096 characters")
	}
	toks, err := lexFilter(expr)
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{}
	for _, p := range props {
		allowed[strings.ToLower(p)] = true
	}
	p := &filterParser{toks: toks, allowed: allowed, props: props}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, badFilter("unexpected %q", p.toks[p.pos].text)
	}
	return &Filter{node: n}, nil
}

func badFilter(format string, args ...any) error {
	e := custody.Errorf(custody.KindInvalid, "InvalidQueryParameterValue", "The value for one of the query parameters is not valid: $filter: "+format+". Use an expression such as state eq 'active'.", args...)
	e.Target = "$filter"
	return e
}

type filterToken struct {
	kind string // word, string, (, ), ,
	text string
}

func lexFilter(s string) ([]filterToken, error) {
	var toks []filterToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, filterToken{kind: string(c), text: string(c)})
			i++
		case c == '\'':
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, badFilter("a string literal is not closed")
			}
			toks = append(toks, filterToken{kind: "string", text: b.String()})
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '(' && s[j] != ')' && s[j] != ',' && s[j] != '\'' {
				j++
			}
			toks = append(toks, filterToken{kind: "word", text: s[i:j]})
			i = j
		}
		if len(toks) > 256 {
			return nil, badFilter("the filter has too many terms")
		}
	}
	return toks, nil
}

type filterParser struct {
	toks    []filterToken
	pos     int
	allowed map[string]bool
	props   []string
}

func (p *filterParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].kind == "word" && strings.EqualFold(p.toks[p.pos].text, w)
}

func (p *filterParser) expect(kind string) (filterToken, error) {
	if p.pos >= len(p.toks) {
		return filterToken{}, badFilter("the expression ends early")
	}
	t := p.toks[p.pos]
	if t.kind != kind {
		return filterToken{}, badFilter("unexpected %q", t.text)
	}
	p.pos++
	return t, nil
}

func (p *filterParser) expr(depth int) (filterNode, error) {
	if depth > 32 {
		return filterNode{}, badFilter("the expression is nested too deeply")
	}
	n, err := p.term(depth)
	if err != nil {
		return n, err
	}
	if !p.peekWord("or") {
		return n, nil
	}
	or := filterNode{op: "or", kids: []filterNode{n}}
	for p.peekWord("or") {
		p.pos++
		k, err := p.term(depth)
		if err != nil {
			return k, err
		}
		or.kids = append(or.kids, k)
	}
	return or, nil
}

func (p *filterParser) term(depth int) (filterNode, error) {
	n, err := p.factor(depth)
	if err != nil {
		return n, err
	}
	if !p.peekWord("and") {
		return n, nil
	}
	and := filterNode{op: "and", kids: []filterNode{n}}
	for p.peekWord("and") {
		p.pos++
		k, err := p.factor(depth)
		if err != nil {
			return k, err
		}
		and.kids = append(and.kids, k)
	}
	return and, nil
}

func (p *filterParser) prop(t filterToken) (string, error) {
	name := strings.ToLower(t.text)
	if !p.allowed[name] {
		return "", badFilter("the property %q cannot be filtered on; use %s", clip(t.text), strings.Join(p.props, ", "))
	}
	return name, nil
}

func (p *filterParser) factor(depth int) (filterNode, error) {
	if p.pos >= len(p.toks) {
		return filterNode{}, badFilter("the expression ends early")
	}
	t := p.toks[p.pos]
	switch {
	case t.kind == "(":
		p.pos++
		n, err := p.expr(depth + 1)
		if err != nil {
			return n, err
		}
		if _, err := p.expect(")"); err != nil {
			return n, err
		}
		return n, nil
	case t.kind == "word" && strings.EqualFold(t.text, "not"):
		p.pos++
		k, err := p.factor(depth + 1)
		if err != nil {
			return k, err
		}
		return filterNode{op: "not", kids: []filterNode{k}}, nil
	case t.kind == "word" && strings.EqualFold(t.text, "startswith"):
		p.pos++
		if _, err := p.expect("("); err != nil {
			return filterNode{}, err
		}
		pt, err := p.expect("word")
		if err != nil {
			return filterNode{}, err
		}
		name, err := p.prop(pt)
		if err != nil {
			return filterNode{}, err
		}
		if _, err := p.expect(","); err != nil {
			return filterNode{}, err
		}
		v, err := p.expect("string")
		if err != nil {
			return filterNode{}, err
		}
		if _, err := p.expect(")"); err != nil {
			return filterNode{}, err
		}
		return filterNode{op: "startswith", prop: name, value: v.text}, nil
	case t.kind == "word":
		p.pos++
		name, err := p.prop(t)
		if err != nil {
			return filterNode{}, err
		}
		opTok, err := p.expect("word")
		if err != nil {
			return filterNode{}, err
		}
		op := strings.ToLower(opTok.text)
		if op != "eq" && op != "ne" {
			return filterNode{}, badFilter("the operator %q is not supported; use eq or ne", clip(opTok.text))
		}
		v, err := p.expect("string")
		if err != nil {
			return filterNode{}, err
		}
		return filterNode{op: op, prop: name, value: v.text}, nil
	}
	return filterNode{}, badFilter("unexpected %q", t.text)
}
