# Reference values for hospstudy.models.weighting (tests/test_weighting_reference.py).
# Run from the repository root:  Rscript tests/reference/weighting_contraception.R
# Exposure: urban residence; propensity model urban ~ age + age2 + livch; outcome use.
# No weighting package (cobalt, WeightIt, survey) is installed here, so weights and balance
# are computed in base R by the published formulas: stabilized IPTW (Robins, Hernan &
# Brumback 2000), overlap weights (Li, Morgan & Zaslavsky 2018), standardized differences
# with weighted means and variances (Austin & Stuart, Stat Med 2015, section 4.1.1);
# the weighted outcome model's errors come from sandwich::vcovHC (HC0) and vcovCL.
suppressMessages({library(sandwich); library(jsonlite)})
d <- read.csv("tests/reference/glm_contraception.csv", colClasses = c(livch = "character"))
ps_fit <- glm(urban ~ age + age2 + livch, binomial, data = d,
              control = glm.control(epsilon = 1e-14, maxit = 100))
e <- fitted(ps_fit); t <- d$urban; pt <- mean(t)
w_iptw <- ifelse(t == 1, pt / e, (1 - pt) / (1 - e))
w_raw <- ifelse(t == 1, 1 / e, 1 / (1 - e))
w_ovl <- ifelse(t == 1, 1 - e, e)
wvar <- function(x, w) { m <- sum(w * x) / sum(w); sum(w) / (sum(w)^2 - sum(w^2)) * sum(w * (x - m)^2) }
wmean <- function(x, w) sum(w * x) / sum(w)
smd <- function(x, w, binary) {
  m1 <- wmean(x[t == 1], w[t == 1]); m0 <- wmean(x[t == 0], w[t == 0])
  if (binary) { v1 <- m1 * (1 - m1); v0 <- m0 * (1 - m0) }
  else { v1 <- wvar(x[t == 1], w[t == 1]); v0 <- wvar(x[t == 0], w[t == 0]) }
  c(smd = (m1 - m0) / sqrt((v1 + v0) / 2), vr = if (binary) NA else v1 / v0)
}
vars <- list(age = list(d$age, FALSE), age2 = list(d$age2, FALSE))
for (lv in sort(unique(d$livch))) vars[[paste0("livch=", lv)]] <- list(as.numeric(d$livch == lv), TRUE)
one <- rep(1, nrow(d))
bal <- lapply(names(vars), function(v) {
  x <- vars[[v]][[1]]; b <- vars[[v]][[2]]
  list(name = v, before = unname(smd(x, one, b)), iptw = unname(smd(x, w_iptw, b)),
       overlap = unname(smd(x, w_ovl, b)))
})
out_fit <- function(wts) {
  d$ps_weight <- wts  # a column: glm() would otherwise find d$w (the test weights) for `w`
  f <- suppressWarnings(glm(use ~ urban, binomial, data = d, weights = ps_weight,
                            control = glm.control(epsilon = 1e-14, maxit = 100)))
  list(coef = unname(coef(f)), se_hc0 = unname(sqrt(diag(vcovHC(f, type = "HC0")))),
       se_cluster = unname(sqrt(diag(vcovCL(f, cluster = ~district)))))
}
res <- list(
  ps_coef = unname(coef(ps_fit)), ps_head = unname(e[1:20]),
  w_iptw_head = unname(w_iptw[1:20]), w_raw_head = unname(w_raw[1:20]), w_ovl_head = unname(w_ovl[1:20]),
  w_iptw_sum = sum(w_iptw), w_ovl_sum = sum(w_ovl),
  balance = bal, outcome_iptw = out_fit(w_iptw), outcome_overlap = out_fit(w_ovl),
  R = R.version.string
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
           "tests/reference/weighting_contraception.json")
