fn main() {
    let _ = toe_pipe::ops::registry();
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0]);
    println!("toe-pipe skeleton {:?}", t.sum(tch::Kind::Float));
}
