package email

import (
	"bytes"
	"html"
	"io"
	"net/url"
	"strings"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// rewriteHTML returns src with the href of every <a> that links to an
// http(s) URL replaced by link(url), and the open pixel (an <img> of
// pixelURL) added before </body>, or at the end when there is none. The
// rest of the document is copied byte for byte: it is tokenized, not
// re-rendered. Links of other schemes (mailto:, tel:, #anchors) stay.
func rewriteHTML(src string, link func(string) string, pixelURL string) string {
	var out bytes.Buffer
	out.Grow(len(src) + 256)
	z := xhtml.NewTokenizer(strings.NewReader(src))
	pixel := `<img src="` + html.EscapeString(pixelURL) + `" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`
	placed := false
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			if z.Err() != io.EOF {
				// The tokenizer stops only at the end of its input.
				out.Write(z.Raw())
			}
			break
		}
		// A copy: TagName and Token lowercase names inside the tokenizer's buffer.
		raw := bytes.Clone(z.Raw())
		switch tt {
		case xhtml.StartTagToken, xhtml.SelfClosingTagToken:
			tok := z.Token()
			if tok.DataAtom != atom.A {
				break
			}
			changed := false
			for i, a := range tok.Attr {
				if a.Namespace == "" && a.Key == "href" && tracked(a.Val) {
					tok.Attr[i].Val = link(strings.TrimSpace(a.Val))
					changed = true
				}
			}
			if changed {
				out.WriteString(tok.String())
				continue
			}
		case xhtml.EndTagToken:
			if name, _ := z.TagName(); !placed && atom.Lookup(name) == atom.Body {
				out.WriteString(pixel)
				placed = true
			}
		}
		out.Write(raw)
	}
	if !placed {
		out.WriteString(pixel)
	}
	return out.String()
}

// tracked reports whether href is an absolute http(s) URL: the links that
// are sent through the click redirect.
func tracked(href string) bool {
	u, err := url.Parse(strings.TrimSpace(href))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
