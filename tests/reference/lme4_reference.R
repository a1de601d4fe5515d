# Reference values for hospstudy.models.mixed.mixed_logit (tests/test_mixed_reference.py).
# Run from the repository root:  Rscript tests/reference/lme4_reference.R
# Writes tests/reference/lme4_reference.json and the data sets it used:
#   lme4_cbpp.csv           lme4::cbpp (56 herd-periods, 15 herds; binomial counts)
#   lme4_cbpp_binary.csv    the same data expanded to one 0/1 row per animal (842 rows)
#   lme4_contraception.csv  mlmRev::Contraception (1934 women, 60 districts)
# lme4's default control stops short of the optimum (tolPwrss 1e-7 moves Laplace estimates by
# ~5e-4), so every fit uses the tight control below; standard errors are lme4's default vcov
# (use.hessian = TRUE: inverse of the finite-difference Hessian of the deviance over theta and
# beta jointly, beta block).
suppressMessages({library(lme4); library(mlmRev); library(jsonlite)})

ctl <- glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa",
                    optCtrl = list(maxfun = 1e5, rhoend = 1e-10))

cb <- cbpp
cb_out <- data.frame(herd = as.integer(as.character(cb$herd)),
                     period = as.integer(as.character(cb$period)),
                     incidence = cb$incidence, size = cb$size)
write.csv(cb_out, "tests/reference/lme4_cbpp.csv", row.names = FALSE)

# one row per animal: `incidence` ones and `size - incidence` zeros per herd-period
idx <- rep(seq_len(nrow(cb)), cb$size)
cbb <- cb[idx, c("herd", "period")]
cbb$y <- unlist(lapply(seq_len(nrow(cb)), function(i)
  c(rep(1L, cb$incidence[i]), rep(0L, cb$size[i] - cb$incidence[i]))))
cbb_out <- data.frame(herd = as.integer(as.character(cbb$herd)),
                      period = as.integer(as.character(cbb$period)), y = cbb$y)
write.csv(cbb_out, "tests/reference/lme4_cbpp_binary.csv", row.names = FALSE)

ct <- Contraception
ct_out <- data.frame(woman = as.integer(as.character(ct$woman)),
                     district = as.integer(as.character(ct$district)),
                     use = as.character(ct$use), livch = as.character(ct$livch),
                     age = ct$age, urban = as.character(ct$urban))
write.csv(ct_out, "tests/reference/lme4_contraception.csv", row.names = FALSE)

summarise <- function(fit, call) {
  re <- ranef(fit, condVar = TRUE)[[1]]
  pv <- attr(re, "postVar")
  list(
    call = call,
    nAGQ = fit@devcomp$dims[["nAGQ"]],
    terms = names(fixef(fit)),
    fixef = unname(fixef(fit)),
    se = unname(sqrt(diag(as.matrix(vcov(fit))))),
    theta = unname(getME(fit, "theta")),
    sd = unname(attr(VarCorr(fit)[[1]], "stddev")),
    loglik = as.numeric(logLik(fit)),
    par = unname(fit@optinfo$val),  # (theta, beta) where bobyqa stopped
    deviance_resid = deviance(fit),
    ranef_level = rownames(re),
    ranef_mode = unname(re[[1]]),
    ranef_sd = unname(sqrt(pv[1, 1, ])),
    conv_messages = as.list(fit@optinfo$conv$lme4$messages)
  )
}

fits <- list()
for (q in c(1L, 5L, 10L, 25L)) {
  f1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial,
              nAGQ = q, control = ctl)
  fits[[sprintf("cbpp_nagq%d", q)]] <- summarise(f1, sprintf(
    "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, nAGQ = %d, control = ctl)", q))
  f2 <- glmer(y ~ period + (1 | herd), cbb, binomial, nAGQ = q, control = ctl)
  fits[[sprintf("cbpp_binary_nagq%d", q)]] <- summarise(f2, sprintf(
    "glmer(y ~ period + (1 | herd), <cbpp expanded to 0/1 rows>, binomial, nAGQ = %d, control = ctl)", q))
  f3 <- glmer(use ~ age + I(age^2) + urban + livch + (1 | district), Contraception, binomial,
              nAGQ = q, control = ctl)
  fits[[sprintf("contraception_nagq%d", q)]] <- summarise(f3, sprintf(
    "glmer(use ~ age + I(age^2) + urban + livch + (1 | district), Contraception, binomial, nAGQ = %d, control = ctl)", q))
  # The same model with age^2 / 100: bobyqa cannot resolve the badly scaled I(age^2) column
  # (restarting it from its own optimum moves the intercept by ~1e-5 while logLik changes by
  # < 1e-8); rescaled, it lands within ~5e-6 of the optimum. Coefficient and SE of the
  # rescaled column are divided by 100 to give the I(age^2) ones.
  f4 <- glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), Contraception, binomial,
              nAGQ = q, control = ctl)
  s4 <- summarise(f4, sprintf(
    "glmer(use ~ age + I(age^2 / 100) + urban + livch + (1 | district), Contraception, binomial, nAGQ = %d, control = ctl); I(age^2/100) rescaled to I(age^2)", q))
  s4$fixef[3] <- s4$fixef[3] / 100
  s4$se[3] <- s4$se[3] / 100
  s4$terms[3] <- "I(age^2)"
  fits[[sprintf("contraception_scaled_nagq%d", q)]] <- s4
}

res <- list(
  control = "glmerControl(tolPwrss = 1e-12, optimizer = 'bobyqa', optCtrl = list(maxfun = 1e5, rhoend = 1e-10))",
  R = R.version.string, lme4 = as.character(packageVersion("lme4")),
  fits = fits
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/lme4_reference.json")
