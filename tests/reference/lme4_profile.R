# Profile-likelihood intervals of the random-intercept SD for hospstudy's mixed_logit(sd_ci="profile")
# (tests/test_mixed_reference.py). Run from the repository root:  Rscript tests/reference/lme4_profile.R
# Data as written by lme4_reference.R (lme4::cbpp, mlmRev::Contraception); same tight control.
# confint(method = "profile") interpolates the profiled deviance with splines, so its limits carry
# an interpolation error of order 1e-4 (the tolerance in the test says so).
suppressMessages({library(lme4); library(mlmRev); library(jsonlite)})
ctl <- glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa",
                    optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
out <- list()
f1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 1, control = ctl)
ci1 <- confint(f1, parm = "theta_", method = "profile", level = 0.95)
out$cbpp_nagq1 <- list(call = "confint(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = 1, control = ctl), parm = 'theta_', method = 'profile', level = 0.95)",
                       sd = unname(getME(f1, "theta")), conf_low = unname(ci1[1, 1]), conf_high = unname(ci1[1, 2]))
f2 <- glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), Contraception, binomial, nAGQ = 1, control = ctl)
ci2 <- confint(f2, parm = "theta_", method = "profile", level = 0.95)
out$contraception_nagq1 <- list(call = "confint(glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), Contraception, binomial, nAGQ = 1, control = ctl), parm = 'theta_', method = 'profile', level = 0.95)",
                                sd = unname(getME(f2, "theta")), conf_low = unname(ci2[1, 1]), conf_high = unname(ci2[1, 2]))
out$R <- R.version.string
out$lme4 <- as.character(packageVersion("lme4"))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/lme4_profile.json")
