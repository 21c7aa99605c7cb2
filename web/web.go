// Package web holds the admin console's templates and message files,
// embedded into the binary. Pages speak Chinese (zh-CN) first; every text
// has an English version (locales/active.en.toml), chosen with ?lang=en
// (kept in a cookie) or by the browser's Accept-Language.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"strings"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"github.com/pelletier/go-toml/v2"
	"golang.org/x/text/language"
)

//go:embed templates/*.html locales/*.toml
var files embed.FS

// Supported languages, the default first.
const (
	Chinese = "zh-CN"
	English = "en"
)

// languages are the supported languages in Catalog.Lang's order of
// preference: zh-CN first, so it is what a browser that asks for none of
// them gets.
var languages = []language.Tag{language.MustParse(Chinese), language.English}

// Catalog holds the console's texts in every supported language, read
// from the embedded message files with go-i18n.
type Catalog struct {
	bundle  *i18n.Bundle
	matcher language.Matcher
	// ids are the message ids of the default language's file.
	ids []string
	// texts are the plain texts (no template data) by language and id.
	texts map[string]map[string]string
	// locs are the localizers by language.
	locs map[string]*i18n.Localizer
}

// NewCatalog loads the embedded message files locales/*.<lang>.toml
// (active.zh-CN.toml, active.en.toml, and one pair per part of the
// console); every id needs a text in every language.
func NewCatalog() (*Catalog, error) {
	b := i18n.NewBundle(languages[0])
	b.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	c := &Catalog{bundle: b, matcher: language.NewMatcher(languages),
		texts: map[string]map[string]string{}, locs: map[string]*i18n.Localizer{}}
	for _, tag := range languages {
		lang := tag.String()
		// One file a part of the console: active.<lang>.toml, then the
		// pages' own (journeys.<lang>.toml, …), each in every language.
		names, err := fs.Glob(files, "locales/*."+lang+".toml")
		if err != nil || len(names) == 0 {
			return nil, fmt.Errorf("no message files for %s", lang)
		}
		for _, name := range names {
			f, err := b.LoadMessageFileFS(files, name)
			if err != nil {
				return nil, fmt.Errorf("load messages %s: %w", name, err)
			}
			if lang == Chinese {
				for _, m := range f.Messages {
					c.ids = append(c.ids, m.ID)
				}
			}
		}
		c.locs[lang] = i18n.NewLocalizer(b, lang)
	}
	for lang, loc := range c.locs {
		texts := map[string]string{}
		for _, id := range c.ids {
			s, tag, err := loc.LocalizeWithTag(&i18n.LocalizeConfig{MessageID: id})
			if err != nil || tag.String() != lang {
				return nil, fmt.Errorf("message %q has no %s text", id, lang)
			}
			texts[id] = s
		}
		c.texts[lang] = texts
	}
	return c, nil
}

// Lang returns the language of a request: a supported ?lang= value (query),
// else the language cookie's, else the best match for Accept-Language,
// else zh-CN.
func (c *Catalog) Lang(query, cookie, acceptLanguage string) string {
	for _, v := range []string{query, cookie} {
		if _, ok := c.texts[v]; ok {
			return v
		}
	}
	if acceptLanguage != "" {
		tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
		if err == nil && len(tags) > 0 {
			_, i, conf := c.matcher.Match(tags...)
			if conf != language.No {
				return languages[i].String()
			}
		}
	}
	return Chinese
}

// Supported reports whether lang is a language of the catalog.
func (c *Catalog) Supported(lang string) bool {
	_, ok := c.texts[lang]
	return ok
}

// Texts returns every plain text of lang by message id (templates read
// them with index).
func (c *Catalog) Texts(lang string) map[string]string {
	if t, ok := c.texts[lang]; ok {
		return t
	}
	return c.texts[Chinese]
}

// T returns message id in lang, filled in with data (a template's
// {{.Name}} values); an unknown id comes back as itself.
func (c *Catalog) T(lang, id string, data map[string]any) string {
	loc, ok := c.locs[lang]
	if !ok {
		loc = c.locs[Chinese]
	}
	s, err := loc.Localize(&i18n.LocalizeConfig{MessageID: id, TemplateData: data})
	if err != nil {
		return id
	}
	return s
}

// IDs returns the message ids (of the default language's file).
func (c *Catalog) IDs() []string { return c.ids }

// Templates parses the console's page templates; funcs are the template
// functions they call (see handler's consoleFuncs).
func Templates(funcs template.FuncMap) *template.Template {
	return template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/*.html"))
}

// Locales returns the names of the embedded message files.
func Locales() []string {
	names, _ := fs.Glob(files, "locales/*.toml")
	for i, n := range names {
		names[i] = strings.TrimPrefix(n, "locales/")
	}
	return names
}
