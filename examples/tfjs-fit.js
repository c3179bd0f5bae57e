/**
 * AdamP in TensorFlow.js: compile a small conv net with it, fit, save the model together with the
 * optimizer's state, load it back and keep training.
 *
 *   node examples/tfjs-fit.js
 *
 * Needs @tensorflow/tfjs-core, @tensorflow/tfjs-layers and a backend (@tensorflow/tfjs-backend-cpu
 * here; @tensorflow/tfjs-node works the same). Prints one JSON line with the results.
 */
'use strict';
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const tfl = require('@tensorflow/tfjs-layers');
const { AdamP } = require('adamp/tfjs');

async function main() {
  await tf.setBackend('cpu');

  // A toy task: is the mean of the left half of an 8x8 image larger than the right half's?
  const n = 64;
  const images = tf.randomUniform([n, 8, 8, 1], 0, 1, 'float32', 42);
  const left = tf.mean(tf.slice(images, [0, 0, 0, 0], [n, 8, 4, 1]), [1, 2, 3]);
  const right = tf.mean(tf.slice(images, [0, 0, 4, 0], [n, 8, 4, 1]), [1, 2, 3]);
  const labels = tf.reshape(tf.cast(tf.greater(left, right), 'float32'), [n, 1]);

  const model = tfl.sequential();
  model.add(tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.heNormal({ seed: 1 }) }));
  model.add(tfl.layers.flatten());
  model.add(tfl.layers.dense({ units: 1, activation: 'sigmoid', kernelInitializer: tfl.initializers.glorotNormal({ seed: 2 }) }));

  // The projection works per output channel. adamp/tfjs chooses each variable's rows by layer
  // type (channelAxis: 'auto', the default; docs/tfjs.md): for these conv kernels
  // [kh, kw, in, out] and dense kernels [in, out] that is the last axis, the rows PyTorch's layout
  // of the same layers gives the official code.
  const optimizer = new AdamP({ lr: 0.01, weightDecay: 1e-2 });
  model.compile({ optimizer, loss: 'binaryCrossentropy', metrics: ['accuracy'] });
  const history = await model.fit(images, labels, { epochs: 25, batchSize: 16, verbose: 0, shuffle: false });
  const loss = history.history.loss;

  // Save the model with the optimizer (config + state), load it, continue training.
  let artifacts;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }), { includeOptimizer: true });
  const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  const more = await loaded.fit(images, labels, { epochs: 2, batchSize: 16, verbose: 0, shuffle: false });

  console.log(JSON.stringify({
    backend: optimizer.backend,
    firstLoss: loss[0],
    lastLoss: loss[loss.length - 1],
    iterations: optimizer.iterations,
    reloadedOptimizer: loaded.optimizer.getClassName(),
    reloadedIterations: loaded.optimizer.iterations,
    lossAfterReload: more.history.loss[more.history.loss.length - 1],
    lastStep: optimizer.lastStepInfo.map((s) => ({ name: s.name, projection: s.projection })),
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
