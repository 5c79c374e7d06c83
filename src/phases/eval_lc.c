/* eval_lc.c - the length-controlled win rate of eval: a two-parameter
 * logistic regression of the pairwise outcome on the log length ratio,
 * fitted by Newton's method (IRLS) in double, read at equal length. A judge
 * that likes long answers makes a policy that talks more win more; the
 * intercept is the win rate that remains once length is accounted for
 * (AlpacaEval's length-controlled win rate, in its simplest form). A weak
 * ridge on the slope keeps it finite when length alone separates some
 * outcomes (short answers that always lose), which the short answers of a
 * small model do; the intercept is then still read where it is measured. */
#include "rlaif/phases/eval.h"

#include <math.h>
#include <string.h>

static double sigmoid(double z) {
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* Penalised log-likelihood at b (ridge on the slope). */
static double loglik(const double *x, const double *y, int64_t n, const double b[2], double ridge) {
    double l = -0.5 * ridge * b[1] * b[1];
    for (int64_t i = 0; i < n; i++) {
        double z = b[0] + b[1] * x[i];
        /* y z - log(1 + e^z), stable for large |z| */
        l += y[i] * z - (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)));
    }
    return l;
}

/* Gradient g and information h (h00, h01, h11) of the penalised
 * log-likelihood at b; slope 0 and its row the identity when there is no
 * slope to fit. */
static void score(const double *x, const double *y, int64_t n, const double b[2], int slope,
                  double ridge, double g[2], double h[3]) {
    g[0] = g[1] = h[0] = h[1] = h[2] = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = sigmoid(b[0] + b[1] * x[i]), w = p * (1 - p), r = y[i] - p;
        g[0] += r, g[1] += r * x[i];
        h[0] += w, h[1] += w * x[i], h[2] += w * x[i] * x[i];
    }
    g[1] -= ridge * b[1], h[2] += ridge;
    if (!slope) g[1] = 0, h[1] = 0, h[2] = 1;
}

int rlaif_logit_fit(const double *x, const double *y, int64_t n, double ridge, double b[2],
                    double se[2]) {
    b[0] = b[1] = se[0] = se[1] = NAN;
    if (n < 1) return -1;
    double my = 0, mx = 0, vx = 0;
    for (int64_t i = 0; i < n; i++) my += y[i], mx += x[i];
    my /= (double)n, mx /= (double)n;
    for (int64_t i = 0; i < n; i++) vx += (x[i] - mx) * (x[i] - mx);
    /* every pair of one length ratio: the slope is not identified */
    int slope = vx > 1e-12 * (double)n;
    double c = my < 1e-6 ? 1e-6 : my > 1 - 1e-6 ? 1 - 1e-6 : my, g[2], h[3], det = 0;
    double bb[2] = {log(c / (1 - c)), 0};
    int converged = 0;
    for (int it = 0; it < 200 && !converged; it++) {
        score(x, y, n, bb, slope, ridge, g, h);
        det = h[0] * h[2] - h[1] * h[1];
        if (!(det > 0) || !isfinite(det)) return -1;
        double d0 = (h[2] * g[0] - h[1] * g[1]) / det, d1 = (h[0] * g[1] - h[1] * g[0]) / det;
        /* Newton's step, halved while it lowers the (concave) objective */
        double l0 = loglik(x, y, n, bb, ridge), t = 1, nb[2];
        for (int k = 0; k < 40; k++, t /= 2) {
            nb[0] = bb[0] + t * d0, nb[1] = bb[1] + t * d1;
            if (loglik(x, y, n, nb, ridge) >= l0 - 1e-12 * (1 + fabs(l0))) break;
        }
        bb[0] = nb[0], bb[1] = nb[1];
        /* all wins or all losses (separation): the estimate runs off to infinity */
        if (!isfinite(bb[0]) || !isfinite(bb[1]) || fabs(bb[0]) > 40 || fabs(bb[1]) > 1e6)
            return -1;
        converged = t * (fabs(d0) + fabs(d1)) < 1e-10 * (1 + fabs(bb[0]) + fabs(bb[1]));
    }
    if (!converged) return -1;
    score(x, y, n, bb, slope, ridge, g, h); /* the information at the estimate */
    det = h[0] * h[2] - h[1] * h[1];
    if (!(det > 0)) return -1;
    b[0] = bb[0], b[1] = slope ? bb[1] : 0;
    se[0] = sqrt(h[2] / det), se[1] = slope ? sqrt(h[0] / det) : NAN;
    return 0;
}

int rlaif_lc_win_rate(const double *x, const double *y, int64_t n, double z, rlaif_lc *out) {
    memset(out, 0, sizeof *out);
    int rc = rlaif_logit_fit(x, y, n, RLAIF_LC_RIDGE, out->b, out->se);
    out->win_rate = sigmoid(out->b[0]);
    out->lo = sigmoid(out->b[0] - z * out->se[0]);
    out->hi = sigmoid(out->b[0] + z * out->se[0]);
    if (rc) out->win_rate = out->lo = out->hi = NAN;
    return rc;
}
