# Reference values for the three-state length-of-stay analysis of hospstudy.models.competing
# (tests/test_competing_three_state.py): discharge home (1), in-hospital death (2) and
# discharge elsewhere (3) compete; none is censoring. Run from the repository root:
#   Rscript tests/reference/survival_three_state.R
# Data: simulated here (seeded), shaped like the flagship's analytic dataset: integer days
# (many ties), 25 hospitals, a hospital-level binary exposure and a patient covariate, a few
# patients still in hospital at the end of follow-up (censored, code 0).
suppressMessages(library(survival))
out <- "tests/reference/fixtures"
set.seed(20240601)
n <- 600
hosp <- sample(1:25, n, replace = TRUE)
cc <- as.integer(hosp %% 3 == 0)
age <- round(rnorm(n, 66, 10))
h <- c(0.020, 0.003, 0.011) # daily hazards of home, death, elsewhere
lp1 <- 0.15 * cc - 0.02 * (age - 66)
lp2 <- -0.20 * cc + 0.04 * (age - 66)
lp3 <- 0.00 * cc + 0.03 * (age - 66)
t1 <- rexp(n, h[1] * exp(lp1)); t2 <- rexp(n, h[2] * exp(lp2)); t3 <- rexp(n, h[3] * exp(lp3))
tt <- pmin(t1, t2, t3)
state <- ifelse(tt == t1, 1L, ifelse(tt == t2, 2L, 3L))
los <- pmax(1, ceiling(tt))
cens <- runif(n) < 0.03 # still in hospital at the end of the data: censored at a random day
los[cens] <- pmax(1, floor(los[cens] * runif(sum(cens))))
state[cens] <- 0L
d <- data.frame(id = 1:n, hospital = hosp, cancer_center = cc, age = age, los = los, state = state)
write.csv(d, file.path(out, "three_state_los.csv"), row.names = FALSE)
cat("rows", nrow(d), "states", table(d$state), "\n")

# Aalen-Johansen by exposure group: every state's curve at every time
fit <- survfit(Surv(los, factor(state)) ~ cancer_center, data = d)
s <- summary(fit, censored = TRUE)
g <- as.integer(sub("cancer_center=", "", as.character(s$strata)))
aj <- data.frame(cancer_center = g, time = s$time,
                 cif1 = s$pstate[, 2], cif2 = s$pstate[, 3], cif3 = s$pstate[, 4],
                 se1 = s$std.err[, 2], se2 = s$std.err[, 3], se3 = s$std.err[, 4])
write.csv(aj, file.path(out, "three_state_aj.csv"), row.names = FALSE)

coefs <- function(f, label) {
  v <- summary(f)$coefficients
  data.frame(model = label, term = rownames(v), estimate = v[, "coef"],
             se = v[, if ("robust se" %in% colnames(v)) "robust se" else "se(coef)"],
             loglik = f$loglik[2], n = f$n, nevent = f$nevent)
}
ctl <- coxph.control(eps = 1e-11, iter.max = 100)
# cause-specific Cox for home: death and discharge elsewhere censored at their day
cs <- coxph(Surv(los, state == 1) ~ cancer_center + age, data = d, cluster = hospital, ties = "efron", control = ctl)
# Fine-Gray for home with BOTH other states competing
fg <- finegray(Surv(los, factor(state)) ~ ., data = d, etype = "1")
fgc <- coxph(Surv(fgstart, fgstop, fgstatus) ~ cancer_center + age, data = fg, weights = fgwt, cluster = hospital, control = ctl)
res <- rbind(coefs(cs, "cause_specific_home"), coefs(fgc, "fine_gray_home"))
write.csv(res, file.path(out, "three_state_cox.csv"), row.names = FALSE)
print(res)
cat(R.version.string, "survival", as.character(packageVersion("survival")), "\n")
