# Reference values for hospstudy.models.gee.gee_logit (tests/test_gee_reference.py).
# Run from the repository root:  Rscript tests/reference/geepack_geeglm.R
# Data: geepack::ohio (wheeze of 537 children at ages 7-10) and mlmRev::Contraception
# (1934 women in 60 districts of very unequal size, like patients in hospitals).
# geeglm's default epsilon (1e-4) stops early; the fits below run to 1e-12 so that they are
# the solution of the estimating equations, not an iterate.
suppressMessages({library(geepack); library(jsonlite)})
ctl <- geese.control(epsilon = 1e-12, maxit = 500)
one <- function(fit) list(
  terms = names(coef(fit)), coef = unname(coef(fit)),
  se_robust = unname(sqrt(diag(fit$geese$vbeta))),
  se_naive = unname(sqrt(diag(fit$geese$vbeta.naiv))),
  alpha = if (length(fit$geese$alpha)) unname(fit$geese$alpha) else NULL,
  scale = unname(fit$geese$gamma), clusters = length(unique(fit$id)), n = length(fit$y))
data(ohio)
ohio <- ohio[order(ohio$id, ohio$age), ]
ohio$w <- 1 + ((ohio$id + ohio$age + 9) %% 3) / 2
write.csv(ohio, "tests/reference/geepack_ohio.csv", row.names = FALSE)
d <- read.csv("tests/reference/glm_contraception.csv")
d <- d[order(d$district), ]
res <- list(
  ohio_exch = one(geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial,
                         corstr = "exchangeable", control = ctl)),
  ohio_ind = one(geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial,
                        corstr = "independence", control = ctl)),
  ohio_exch_w = one(geeglm(resp ~ age + smoke, id = id, data = ohio, family = binomial,
                           weights = w, corstr = "exchangeable", control = ctl)),
  contra_exch = one(geeglm(use ~ age + age2 + urban + livch, id = district, data = d,
                           family = binomial, corstr = "exchangeable", control = ctl)),
  contra_ind_w = one(geeglm(use ~ age + age2 + urban + livch, id = district, data = d,
                            family = binomial, weights = w, corstr = "independence", control = ctl)),
  R = R.version.string, geepack = as.character(packageVersion("geepack"))
)
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"),
           "tests/reference/geepack_geeglm.json")
