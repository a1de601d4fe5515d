# Case weights in hospstudy's mixed_logit vs lme4::glmer(weights =) (tests/test_mixed_reference.py).
# Run from the repository root:  Rscript tests/reference/lme4_weights.R
# mlmRev::Contraception with integer prior weights w = 1 + district %% 3 (1, 2 or 3), the model
# of lme4_reference.R with I(age^2 / 100) (rescaled back), tight control as there.
suppressMessages({library(lme4); library(mlmRev); library(jsonlite)})
ctl <- glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa",
                    optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
d <- Contraception
d$w <- 1 + as.integer(as.character(d$district)) %% 3
fits <- list()
for (q in c(1L, 10L)) {
  f <- glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), d, binomial,
             weights = w, nAGQ = q, control = ctl)
  fe <- unname(fixef(f)); se <- unname(sqrt(diag(as.matrix(vcov(f)))))
  fe[3] <- fe[3] / 100; se[3] <- se[3] / 100
  fits[[sprintf("contraception_weighted_nagq%d", q)]] <- list(
    call = sprintf("glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), d, binomial, weights = 1 + district %%%% 3, nAGQ = %d, control = ctl); I(age^2/100) rescaled", q),
    fixef = fe, se = se, sd = unname(getME(f, "theta")), loglik = as.numeric(logLik(f)))
}
writeLines(toJSON(list(fits = fits, R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/lme4_weights.json")
