package model

import "testing"

// wejourney's PostgreSQL connections plan with random_page_cost 1.1 and a
// custom plan per execution, unless the URL chooses otherwise.
func TestWithPlannerSettings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"postgres://u@h:5432/db", "postgres://u@h:5432/db?random_page_cost=1.1&plan_cache_mode=force_custom_plan"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?sslmode=disable&random_page_cost=1.1&plan_cache_mode=force_custom_plan"},
		{"postgres://u@h/db?random_page_cost=4", "postgres://u@h/db?random_page_cost=4&plan_cache_mode=force_custom_plan"},
		{"host=h dbname=db plan_cache_mode=auto", "host=h dbname=db plan_cache_mode=auto random_page_cost=1.1"},
	} {
		if got := withPlannerSettings(tt.in); got != tt.want {
			t.Errorf("withPlannerSettings(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
