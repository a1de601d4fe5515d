# A regression case for mixed_logit (tests/test_mixed_reference.py): data on which the Laplace
# fit once stopped at the boundary (SD 0) although the likelihood is higher at SD ~ 0.34.
# The data are synthetic (hospstudy synth --seed 7000000 --scale 1 --no-background, flagship
# cohort, patients discharged alive, the data-generating model's covariates; made by
# bench/coverage.analysis_frame), stored in lme4_false_boundary.csv.
# Also a data set whose maximum-likelihood SD is small but positive (below).
# Run from the repository root:  Rscript tests/reference/lme4_false_boundary.R
suppressMessages({library(lme4); library(jsonlite)})
ctl <- glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa",
                    optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
d <- read.csv("tests/reference/lme4_false_boundary.csv")
fits <- list()
for (q in c(1L, 10L)) {
  f <- glmer(unfavorable_ambulatory ~ cancer_center + volume_per50 + emergency + rapid_growth +
               age_per10 + nonambulatory_adm + complication + (1 | hospital_id),
             d, binomial, nAGQ = q, control = ctl)
  fits[[sprintf("nagq%d", q)]] <- list(
    fixef = unname(fixef(f)), se = unname(sqrt(diag(as.matrix(vcov(f))))),
    sd = unname(getME(f, "theta")), loglik = as.numeric(logLik(f)))
}
# A small true SD near the boundary: 3000 rows, 150 hospitals, no planted hospital effect
# (numpy default_rng(3): h ~ U{0..149}, x ~ N(0,1), y ~ Bernoulli(expit(-0.4 + 0.5 x))),
# stored in lme4_small_sd.csv. The maximum-likelihood SD is small but not 0.
s <- read.csv("tests/reference/lme4_small_sd.csv")
for (q in c(1L, 5L)) {
  f <- glmer(y ~ x + (1 | h), s, binomial, nAGQ = q, control = ctl)
  fits[[sprintf("small_sd_nagq%d", q)]] <- list(
    fixef = unname(fixef(f)), se = unname(sqrt(diag(as.matrix(vcov(f))))),
    sd = unname(getME(f, "theta")), loglik = as.numeric(logLik(f)))
}
writeLines(toJSON(list(fits = fits, R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/lme4_false_boundary.json")
