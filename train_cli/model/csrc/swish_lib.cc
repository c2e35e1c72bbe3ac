/*
 * swish_lib.cc -- fused Swish / Swish-beta custom operators for MXNet 1.9.x
 * (custom-operator library API, include/mxnet/lib_api.h + src/lib_api.cc).
 *
 * Ops registered (visible as mx.nd.<name>, mx.sym.<name>, F.<name> after
 * mx.library.load(path)):
 *
 *   fused_swish(x)            y = x * sigmoid(x)
 *     backward:               dx = dy * (s + x*s*(1-s)),  s = sigmoid(x)
 *
 *   fused_swish_beta(x, beta) y = x * sigmoid(beta*x), beta: 1-element tensor
 *     backward:               dx    = dy * (s + beta*x*s*(1-s))
 *                             dbeta = sum(dy * x^2 * s*(1-s))
 *
 * float32 and float64.  Element loops are OpenMP-parallel (static schedule)
 * above a size threshold and SIMD-vectorised with a branch-free polynomial
 * exp (no libm call, so no -ffast-math needed).
 *
 * Notes on the lib_api contract in 1.9.1 (see src/c_api/c_api.cc):
 *  - backward inputs are: [ograds..., inputs..., outputs...]
 *    -> swish:      (dy, x, y)         outputs (dx)
 *    -> swish_beta: (dy, x, beta, y)   outputs (dx, dbeta)
 *  - OpReqType (kWriteTo / kAddTo) is NOT passed to the library: outputs are
 *    always overwritten.  Fine for normal Gluon training (grad_req='write');
 *    do not rely on grad_req='add' for beta.
 *  - inputs in an oneDNN (MKLDNN) blocked layout are reordered to the default
 *    layout by MXNet (Reorder2Default) before this code sees them.
 */
#include <string>
#include <vector>
#include <unordered_map>
#include "mxnet/lib_api.h"

using namespace mxnet::ext;

#include "swish_kernels.h"
using namespace swishk;

namespace {
int64_t numel(MXTensor& t) { return t.size(); }
}  // namespace

// =========================== fused_swish ====================================
MXReturnValue swishForward(const std::unordered_map<std::string, std::string>& attrs,
                           std::vector<MXTensor>* inputs,
                           std::vector<MXTensor>* outputs,
                           const OpResource& res) {
  MXTensor& x = inputs->at(0);
  MXTensor& y = outputs->at(0);
  const int64_t n = numel(x);
  if (x.dtype == kFloat32) {
    swish_fwd<float>(x.data<float>(), y.data<float>(), n, 1.0f);
  } else if (x.dtype == kFloat64) {
    swish_fwd<double>(x.data<double>(), y.data<double>(), n, 1.0);
  } else {
    MX_ERROR_MSG << "fused_swish: unsupported dtype " << x.dtype;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// inputs: dy, x, y    outputs: dx
MXReturnValue swishBackward(const std::unordered_map<std::string, std::string>& attrs,
                            std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs,
                            const OpResource& res) {
  MXTensor& dy = inputs->at(0);
  MXTensor& x = inputs->at(1);
  MXTensor& dx = outputs->at(0);
  const int64_t n = numel(x);
  if (x.dtype == kFloat32) {
    swish_bwd<float>(dy.data<float>(), x.data<float>(), dx.data<float>(), n, 1.0f);
  } else if (x.dtype == kFloat64) {
    swish_bwd<double>(dy.data<double>(), x.data<double>(), dx.data<double>(), n, 1.0);
  } else {
    MX_ERROR_MSG << "fused_swish: unsupported dtype " << x.dtype;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

MXReturnValue swishParseAttrs(const std::unordered_map<std::string, std::string>& attrs,
                              int* num_in, int* num_out) {
  *num_in = 1;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue swishInferType(const std::unordered_map<std::string, std::string>& attrs,
                             std::vector<int>* intypes, std::vector<int>* outtypes) {
  const int t = intypes->at(0);
  if (t != kFloat32 && t != kFloat64) {
    MX_ERROR_MSG << "fused_swish: expected float32/float64 input, got dtype " << t;
    return MX_FAIL;
  }
  outtypes->at(0) = t;
  return MX_SUCCESS;
}

MXReturnValue swishInferShape(const std::unordered_map<std::string, std::string>& attrs,
                              std::vector<std::vector<unsigned int>>* inshapes,
                              std::vector<std::vector<unsigned int>>* outshapes) {
  outshapes->at(0) = inshapes->at(0);
  return MX_SUCCESS;
}

REGISTER_OP(fused_swish)
.setForward(swishForward, "cpu")
.setBackward(swishBackward, "cpu")
.setParseAttrs(swishParseAttrs)
.setInferType(swishInferType)
.setInferShape(swishInferShape);

// ========================= fused_swish_beta =================================
static bool read_beta(MXTensor& b, double* out) {
  if (b.size() != 1) return false;
  if (b.dtype == kFloat32) *out = b.data<float>()[0];
  else if (b.dtype == kFloat64) *out = b.data<double>()[0];
  else return false;
  return true;
}

// inputs: x, beta   outputs: y
MXReturnValue swishBetaForward(const std::unordered_map<std::string, std::string>& attrs,
                               std::vector<MXTensor>* inputs,
                               std::vector<MXTensor>* outputs,
                               const OpResource& res) {
  MXTensor& x = inputs->at(0);
  double beta;
  if (!read_beta(inputs->at(1), &beta)) {
    MX_ERROR_MSG << "fused_swish_beta: beta must be a 1-element float tensor";
    return MX_FAIL;
  }
  MXTensor& y = outputs->at(0);
  const int64_t n = numel(x);
  if (x.dtype == kFloat32) {
    swish_fwd<float>(x.data<float>(), y.data<float>(), n, static_cast<float>(beta));
  } else if (x.dtype == kFloat64) {
    swish_fwd<double>(x.data<double>(), y.data<double>(), n, beta);
  } else {
    MX_ERROR_MSG << "fused_swish_beta: unsupported dtype " << x.dtype;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// inputs: dy, x, beta, y    outputs: dx, dbeta
MXReturnValue swishBetaBackward(const std::unordered_map<std::string, std::string>& attrs,
                                std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs,
                                const OpResource& res) {
  MXTensor& dy = inputs->at(0);
  MXTensor& x = inputs->at(1);
  double beta;
  if (!read_beta(inputs->at(2), &beta)) {
    MX_ERROR_MSG << "fused_swish_beta: beta must be a 1-element float tensor";
    return MX_FAIL;
  }
  MXTensor& dx = outputs->at(0);
  MXTensor& dbeta = outputs->at(1);
  const int64_t n = numel(x);
  if (x.dtype == kFloat32) {
    double g = swish_beta_bwd<float>(dy.data<float>(), x.data<float>(), dx.data<float>(), n,
                                     static_cast<float>(beta));
    if (dbeta.dtype == kFloat32) dbeta.data<float>()[0] = static_cast<float>(g);
    else dbeta.data<double>()[0] = g;
  } else if (x.dtype == kFloat64) {
    double g = swish_beta_bwd<double>(dy.data<double>(), x.data<double>(), dx.data<double>(),
                                      n, beta);
    if (dbeta.dtype == kFloat32) dbeta.data<float>()[0] = static_cast<float>(g);
    else dbeta.data<double>()[0] = g;
  } else {
    MX_ERROR_MSG << "fused_swish_beta: unsupported dtype " << x.dtype;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

MXReturnValue swishBetaParseAttrs(const std::unordered_map<std::string, std::string>& attrs,
                                  int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue swishBetaInferType(const std::unordered_map<std::string, std::string>& attrs,
                                 std::vector<int>* intypes, std::vector<int>* outtypes) {
  const int t = intypes->at(0);
  if (t != kFloat32 && t != kFloat64) {
    MX_ERROR_MSG << "fused_swish_beta: expected float32/float64 input, got dtype " << t;
    return MX_FAIL;
  }
  const int tb = intypes->at(1);
  if (tb != kFloat32 && tb != kFloat64) {
    MX_ERROR_MSG << "fused_swish_beta: expected float32/float64 beta, got dtype " << tb;
    return MX_FAIL;
  }
  outtypes->at(0) = t;
  return MX_SUCCESS;
}

MXReturnValue swishBetaInferShape(const std::unordered_map<std::string, std::string>& attrs,
                                  std::vector<std::vector<unsigned int>>* inshapes,
                                  std::vector<std::vector<unsigned int>>* outshapes) {
  size_t nb = 1;
  for (unsigned d : inshapes->at(1)) nb *= d;
  if (nb != 1) {
    MX_ERROR_MSG << "fused_swish_beta: beta must have exactly 1 element";
    return MX_FAIL;
  }
  outshapes->at(0) = inshapes->at(0);
  return MX_SUCCESS;
}

REGISTER_OP(fused_swish_beta)
.setForward(swishBetaForward, "cpu")
.setBackward(swishBetaBackward, "cpu")
.setParseAttrs(swishBetaParseAttrs)
.setInferType(swishBetaInferType)
.setInferShape(swishBetaInferShape);

MXReturnValue initialize(int version) {
  if (version >= 10900) {
    return MX_SUCCESS;
  }
  MX_ERROR_MSG << "fused swish library: MXNet version " << version << " not supported";
  return MX_FAIL;
}
