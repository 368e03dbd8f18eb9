fn main() {
    println!("simboxd");
}
