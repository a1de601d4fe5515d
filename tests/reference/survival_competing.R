# Reference values for hospstudy.models.competing (tests/test_competing_reference.py).
# Run from the repository root:  Rscript tests/reference/survival_competing.R
# Data: survival::mgus2 (Kyle et al., 1384 patients with monoclonal gammopathy): time to
# plasma-cell malignancy (event 1) with death as the competing event (event 2), as in the
# survival package's "compete" vignette. Complete cases on the covariates used.
suppressMessages(library(survival))
out <- "tests/reference/fixtures"
d <- mgus2
d$etime <- with(d, ifelse(pstat == 0, futime, ptime))
d$event <- with(d, ifelse(pstat == 0, 2 * death, 1))
d$male <- as.integer(d$sex == "M")
d <- d[complete.cases(d[, c("etime", "event", "age", "male", "hgb", "dxyr")]), c("id", "etime", "event", "age", "male", "hgb", "dxyr")]
write.csv(d, file.path(out, "mgus2_competing.csv"), row.names = FALSE)
cat("rows", nrow(d), "events", table(d$event), "\n")

# Aalen-Johansen cumulative incidence by sex (survfit on a multi-state Surv: infinitesimal
# jackknife standard errors, log-scale confidence limits).
fit <- survfit(Surv(etime, factor(event)) ~ male, data = d)
s <- summary(fit, censored = TRUE)
strata <- as.integer(sub("male=", "", as.character(s$strata)))
aj <- data.frame(male = strata, time = s$time,
                 cif1 = s$pstate[, 2], cif2 = s$pstate[, 3],
                 se1 = s$std.err[, 2], se2 = s$std.err[, 3],
                 lo1 = s$lower[, 2], hi1 = s$upper[, 2])
write.csv(aj, file.path(out, "mgus2_aj.csv"), row.names = FALSE)

coefs <- function(f, label) {
  v <- summary(f)$coefficients
  data.frame(model = label, term = rownames(v), estimate = v[, "coef"],
             se_naive = sqrt(diag(f$naive.var %||% f$var)), se = v[, if ("robust se" %in% colnames(v)) "robust se" else "se(coef)"],
             loglik = f$loglik[2], n = f$n, nevent = f$nevent)
}
`%||%` <- function(a, b) if (is.null(a)) b else a

ctl <- coxph.control(eps = 1e-11, iter.max = 100)
# Cause-specific Cox models, Efron ties, cluster-robust variance by year of diagnosis.
cs1 <- coxph(Surv(etime, event == 1) ~ age + male + hgb, data = d, cluster = dxyr, ties = "efron", control = ctl)
cs2 <- coxph(Surv(etime, event == 2) ~ age + male + hgb, data = d, cluster = dxyr, ties = "efron", control = ctl)
cs1n <- coxph(Surv(etime, event == 1) ~ age + male + hgb, data = d, ties = "efron", control = ctl)

# Fine-Gray subdistribution hazard: finegray() expansion, then a weighted Cox model.
fg <- finegray(Surv(etime, factor(event)) ~ ., data = d, etype = "1")
write.csv(fg[, c("id", "fgstart", "fgstop", "fgstatus", "fgwt")], gzfile(file.path(out, "mgus2_finegray_rows.csv.gz")), row.names = FALSE)
fg1 <- coxph(Surv(fgstart, fgstop, fgstatus) ~ age + male + hgb, data = fg, weights = fgwt, control = ctl)
fg1c <- coxph(Surv(fgstart, fgstop, fgstatus) ~ age + male + hgb, data = fg, weights = fgwt, cluster = dxyr, control = ctl)
fg1i <- coxph(Surv(fgstart, fgstop, fgstatus) ~ age + male + hgb, data = fg, weights = fgwt, cluster = id, control = ctl)

res <- rbind(coefs(cs1, "cs1_cluster"), coefs(cs2, "cs2_cluster"), coefs(cs1n, "cs1_naive"),
             coefs(fg1, "fg1"), coefs(fg1i, "fg1_id"), coefs(fg1c, "fg1_cluster"))
write.csv(res, file.path(out, "mgus2_cox.csv"), row.names = FALSE)
print(res)
cat(R.version.string, "survival", as.character(packageVersion("survival")), "\n")
